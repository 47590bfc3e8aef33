// @vitest-environment jsdom
/**
 * The sidebar's components drawn from a model on a fake server, read and clicked as a person would
 * (by text, role and label), including names the sandbox chose to look like markup.
 */
import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import * as React from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { SandboxView } from '../src/components';
import { SandboxModel } from '../src/model';
import { fakeServer, file, modelOn } from './fakes';

vi.mock('../src/components/icons', () => import('./stubs/icons'));

const answers = vi.hoisted(() => ({ confirm: true, form: null as Record<string, string> | null }));
vi.mock('../src/dialogs', () => ({
  CREDENTIAL_NOTE: '',
  credentialFields: () => [],
  confirm: vi.fn(async () => answers.confirm),
  askForm: vi.fn(async () => answers.form)
}));

let model: SandboxModel | null = null;

beforeEach(() => {
  answers.confirm = true;
  answers.form = null;
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterEach(() => {
  cleanup();
  model?.dispose();
  model = null;
  vi.restoreAllMocks();
});

function commands() {
  return { openFile: vi.fn(), openTerminal: vi.fn() };
}

async function shown(setup: (server: ReturnType<typeof fakeServer>['server']) => void = () => undefined) {
  const fake = fakeServer();
  setup(fake.server);
  model = modelOn(fake.api);
  const cmds = commands();
  render(<SandboxView model={model} commands={cmds} />);
  await act(() => model!.refresh());
  return { ...fake, commands: cmds, model };
}

describe('the sidebar as a person sees it', () => {
  it('says what to do without a notebook, or with another kernel', async () => {
    const { api } = fakeServer();
    model = modelOn(api, { kernel: null });
    render(<SandboxView model={model} commands={commands()} />);
    expect(screen.getByRole('status').textContent).toBe('Open a notebook to see its sandbox.');
    act(() => model!.follow(() => ({ id: 'k-2', name: 'python3', status: 'idle' })));
    expect(screen.getByRole('status').textContent).toBe(
      'This notebook does not use the sandbox kernel ("Python 3 (sandbox)").'
    );
    expect(screen.queryByText('Status')).toBeNull();
  });

  it("shows a running sandbox's status, files and previews", async () => {
    await shown(server => (server.sandbox!.ports = [8123]));
    expect(screen.getByRole('status').textContent).toBe('Sandbox sbx1 is running.');
    const status = document.querySelector('[data-section="status"]') as HTMLElement;
    expect(within(status).getByText('running, up 2 min')).toBeTruthy();
    expect(within(status).getByText('1 vCPU · 2.5 s used')).toBeTruthy();
    expect(within(status).getByText('64 MiB of 1.0 GiB')).toBeTruthy();
    const files = screen.getByRole('list', { name: 'Files in the sandbox' });
    expect(
      Array.from(files.querySelectorAll('.jp-SandboxSidebar-file')).map(li => li.getAttribute('data-name'))
    ).toEqual(['data', 'notes.txt']);
    expect(screen.getByText('port 8123')).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Open preview of port 8123' })).toBeTruthy();
  });

  it('draws a name the sandbox chose to look like markup as text, never as markup', async () => {
    const hostile = '<img src=x onerror="window.pwned=1">.txt';
    await shown(server => server.folders[''].push(file(hostile)));
    const row = Array.from(document.querySelectorAll('.jp-SandboxSidebar-file')).find(
      li => li.getAttribute('data-name') === hostile
    ) as HTMLElement;
    expect(row.querySelector('.jp-SandboxSidebar-link')!.textContent).toBe(hostile);
    expect(document.querySelector('img')).toBeNull();
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });

  it('opens a text file in the editor and unfolds a folder on a click', async () => {
    const { commands: cmds } = await shown();
    fireEvent.click(screen.getByText('notes.txt'));
    expect(cmds.openFile).toHaveBeenCalledWith('sbx1', 'notes.txt');
    const data = screen.getByText('data').closest('button')!;
    expect(data.getAttribute('aria-expanded')).toBe('false');
    fireEvent.click(data);
    await waitFor(() => expect(screen.getByText('table.csv')).toBeTruthy());
    expect(data.getAttribute('aria-expanded')).toBe('true');
  });

  it('stops the sandbox on Stop and then offers Start', async () => {
    const { api } = await shown();
    fireEvent.click(screen.getByRole('button', { name: 'Stop' }));
    await waitFor(() => expect(screen.getByRole('button', { name: 'Start' })).toBeTruthy());
    expect(api.action).toHaveBeenCalledWith('sbx1', 'stop');
    expect(screen.getByRole('status').textContent).toBe('Sandbox sbx1 is exited; the next cell starts it again.');
    // A stopped sandbox has no files, git or previews to show.
    expect(document.querySelector('[data-section="files"]')).toBeNull();
    expect(screen.getByRole('button', { name: 'Terminal' }).hasAttribute('disabled')).toBe(true);
  });

  it('deletes the sandbox only when the person confirms', async () => {
    const { api } = await shown();
    answers.confirm = false;
    fireEvent.click(screen.getByRole('button', { name: 'Delete…' }));
    await act(async () => undefined);
    expect(api.remove).not.toHaveBeenCalled();
    answers.confirm = true;
    fireEvent.click(screen.getByRole('button', { name: 'Delete…' }));
    await waitFor(() => expect(api.remove).toHaveBeenCalledWith('sbx1'));
    await waitFor(() => expect(screen.queryByText('Status')).toBeNull());
  });

  it('opens a terminal into the sandbox', async () => {
    const { commands: cmds } = await shown();
    fireEvent.click(screen.getByRole('button', { name: 'Terminal' }));
    expect(cmds.openTerminal).toHaveBeenCalledWith('sbx1');
  });

  it('creates a folder with the name typed in the form', async () => {
    const { api } = await shown();
    answers.form = { name: 'results' };
    fireEvent.click(screen.getByRole('button', { name: 'New folder' }));
    await waitFor(() => expect(screen.getByText('results')).toBeTruthy());
    expect(api.makeFolder).toHaveBeenCalledWith('sbx1', 'results');
  });

  it('lists what a name search found', async () => {
    const { api } = await shown();
    api.search.mockResolvedValueOnce({ files: ['/home/sandbox/data/table.csv'], truncated: false });
    const input = screen.getByRole('textbox', { name: 'Search file names' });
    fireEvent.keyDown(input, { key: 'Enter', target: { value: 'table' } });
    const found = await screen.findByRole('list', { name: 'Files found' });
    expect(found.textContent).toBe('~/data/table.csv');
    expect(api.search).toHaveBeenCalledWith('sbx1', '*table*', '');
  });

  it('reads the repository when the Git section is opened and stages a changed file', async () => {
    const { api } = await shown(s => {
      s.git = {
        branch: 'main',
        ahead: 1,
        behind: 0,
        files: [
          { path: 'a.py', index: 'M', worktree: ' ', staged: true, untracked: false },
          { path: 'b.py', index: ' ', worktree: 'M', staged: false, untracked: false }
        ]
      };
    });
    expect(api.gitStatus).not.toHaveBeenCalled();
    const git = document.querySelector('[data-section="git"]') as HTMLDetailsElement;
    git.open = true;
    fireEvent(git, new Event('toggle'));
    await waitFor(() => expect(git.querySelector('[data-field="branch"]')!.textContent).toBe('On main · 1 ahead'));
    expect(within(git).getByText('Staged (1)')).toBeTruthy();
    expect(within(git).getByText('Changed (1)')).toBeTruthy();
    fireEvent.click(within(git).getByRole('button', { name: 'Stage b.py' }));
    await waitFor(() => expect(api.gitAdd).toHaveBeenCalledWith('sbx1', '', ['b.py']));
  });
});
