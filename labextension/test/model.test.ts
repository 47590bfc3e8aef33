/**
 * The sidebar's model on a fake REST client: when it asks the server (and when it does not), what
 * it keeps, and what it tells the person.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { ISandbox } from '../src/api';
import { SandboxApiError } from '../src/errors';
import type { ILive } from '../src/model';
import { fakeNotifier, fakeServer, file, folder, liveSandbox, modelOn } from './fakes';

beforeEach(() => {
  // Time moves on its own too, so a refresh's immediate tick runs; tests jump ahead to see the poll's pace.
  vi.useFakeTimers({ shouldAdvanceTime: true });
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('polling', () => {
  it('asks the server every few seconds while the sidebar is shown', async () => {
    const { api } = fakeServer();
    const model = modelOn(api);
    await vi.advanceTimersByTimeAsync(30_000);
    // About one lookup per 3 s: the sandbox, then its files.
    expect(api.forKernel.mock.calls.length).toBeGreaterThanOrEqual(8);
    expect(api.forKernel.mock.calls.length).toBeLessThanOrEqual(12);
    expect(api.list).toHaveBeenCalled();
    expect(model.sandbox?.id).toBe('sbx1');
    model.dispose();
  });

  it('makes no request at all while the panel or the tab is hidden, and looks again once shown', async () => {
    const { api } = fakeServer();
    let hidden = true;
    const model = modelOn(api, { standby: () => hidden });
    await model.refresh();
    model.kernelChanged();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(api.forKernel).not.toHaveBeenCalled();
    expect(api.get).not.toHaveBeenCalled();
    expect(api.list).not.toHaveBeenCalled();
    expect(model.sandbox).toBeNull();

    hidden = false;
    await model.refresh();
    expect(api.forKernel).toHaveBeenCalledTimes(1);
    expect(model.sandbox?.state).toBe('running');
    expect(model.listing.map(e => e.name)).toEqual(['data', 'notes.txt']);

    // Hidden again: the timer goes on, the requests stop.
    hidden = true;
    const asked = api.forKernel.mock.calls.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(api.forKernel.mock.calls.length).toBe(asked);
    model.dispose();
  });

  it('restarts as %sandbox restart does: one restart call, no stop and start', async () => {
    const { api } = fakeServer();
    const model = modelOn(api);
    await model.refresh();

    await model.restart();
    expect(api.restart).toHaveBeenCalledWith('sbx1');
    expect(api.action).not.toHaveBeenCalled();
    expect(model.running).toBe(true);
    model.dispose();
  });

  it('refreshes at once after an action, without waiting for the next tick', async () => {
    const { api } = fakeServer();
    const model = modelOn(api);
    await model.refresh();
    api.forKernel.mockClear();
    api.list.mockClear();

    await model.stop();
    expect(api.action).toHaveBeenCalledWith('sbx1', 'stop');
    expect(api.forKernel).toHaveBeenCalledTimes(1);
    expect(model.sandbox?.state).toBe('exited');
    expect(model.running).toBe(false);

    await model.start();
    await model.newFolder('results');
    expect(api.makeFolder).toHaveBeenCalledWith('sbx1', 'results');
    expect(model.listing.map(e => e.name)).toContain('results');
    model.dispose();
  });

  it('backs off while the server fails and returns to its pace once it answers', async () => {
    const { api, server } = fakeServer();
    server.failing = new SandboxApiError('the Jupyter server cannot be reached: refused', 0);
    const notify = fakeNotifier();
    const model = modelOn(api, { notify });
    await vi.advanceTimersByTimeAsync(120_000);
    const failed = api.forKernel.mock.calls.length;
    // At a steady 3 s it would have asked 40 times.
    expect(failed).toBeGreaterThan(1);
    expect(failed).toBeLessThan(15);
    // A failed refresh is not a notification: nobody asked for it.
    expect(notify.messages).toEqual([]);

    server.failing = null;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(model.sandbox?.id).toBe('sbx1');
    const recovered = api.forKernel.mock.calls.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(api.forKernel.mock.calls.length - recovered).toBeGreaterThanOrEqual(8);
    model.dispose();
  });

  it('never runs two lookups at once, and what it draws after an action is newer than the action', async () => {
    const { api, server } = fakeServer();
    const model = modelOn(api);
    await model.refresh();
    let inFlight = 0;
    let most = 0;
    let asked: ILive | null = null;
    api.forKernel.mockImplementation(async (kernelId: string) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      // What the server says is what it had when asked, however late the answer comes.
      const answer = server.sandbox && server.sandbox.kernel_id === kernelId ? { ...server.sandbox } : null;
      asked = answer;
      await new Promise(resolve => setTimeout(resolve, 200));
      inFlight -= 1;
      return answer;
    });
    api.get.mockImplementation(async () => asked!);
    // Status changes every 50 ms while each lookup takes 200 ms.
    for (let i = 0; i < 10; i++) {
      model.kernelChanged();
      await vi.advanceTimersByTimeAsync(50);
    }
    // Stop while a lookup that began before it is still out.
    model.kernelChanged();
    await model.stop();
    expect(most).toBe(1);
    expect(model.sandbox?.state).toBe('exited');
    model.dispose();
  });

  it('stops asking once disposed', async () => {
    const { api } = fakeServer();
    const model = modelOn(api);
    await model.refresh();
    model.dispose();
    const asked = api.forKernel.mock.calls.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(api.forKernel.mock.calls.length).toBe(asked);
  });
});

describe('following notebooks', () => {
  it('shows nothing for a notebook without the sandbox kernel and asks nothing about it', async () => {
    const { api } = fakeServer();
    const model = modelOn(api, { kernel: { id: 'k-2', name: 'python3', status: 'idle' } });
    await model.refresh();
    expect(api.forKernel).not.toHaveBeenCalled();
    expect(model.sandbox).toBeNull();
    model.dispose();
  });

  it("drops an answer about the previous notebook's sandbox that comes after switching", async () => {
    const { api } = fakeServer();
    let answer: (value: ISandbox | null) => void = () => undefined;
    api.forKernel.mockImplementationOnce(() => new Promise(resolve => (answer = resolve)));
    const model = modelOn(api);
    await vi.advanceTimersByTimeAsync(0);
    model.follow(() => ({ id: 'k-other', name: 'sandbox-python', status: 'idle' }));
    answer(liveSandbox());
    await vi.advanceTimersByTimeAsync(0);
    await model.refresh();
    // k-other has no sandbox: the late answer about k-1's must not show under it.
    expect(model.sandbox).toBeNull();
    expect(model.listing).toEqual([]);
    model.dispose();
  });
});

describe('actions', () => {
  it("turns a failed action into a notification with the server's message", async () => {
    const { api } = fakeServer();
    api.move.mockRejectedValueOnce(new SandboxApiError('the destination notes.md exists', 409));
    const notify = fakeNotifier();
    const model = modelOn(api, { notify });
    await model.refresh();
    await model.rename(file('notes.txt'), 'notes.md');
    expect(api.move).toHaveBeenCalledWith('sbx1', 'notes.txt', 'notes.md');
    expect(notify.messages).toEqual(['error: Rename: the destination notes.md exists']);
    model.dispose();
  });

  it('refuses names and modes the server would refuse, saying why, without a request', async () => {
    const { api } = fakeServer();
    const notify = fakeNotifier();
    const model = modelOn(api, { notify });
    await model.refresh();
    await model.rename(file('notes.txt'), '../escape');
    await model.newFolder('..');
    await model.chmod(file('notes.txt'), '999');
    await model.clone({ url: 'file:///etc', path: '' });
    expect(api.move).not.toHaveBeenCalled();
    expect(api.makeFolder).not.toHaveBeenCalled();
    expect(api.chmod).not.toHaveBeenCalled();
    expect(api.gitClone).not.toHaveBeenCalled();
    expect(notify.messages).toEqual([
      'error: Rename: a name cannot contain "/"',
      'error: New folder: ".." is not a name',
      'error: Permissions: permissions are 3 or 4 octal digits, e.g. 644 or 0755',
      'error: Clone: use an https://, ssh:// or git:// URL'
    ]);
    model.dispose();
  });

  it('says the sandbox was deleted only when it was', async () => {
    const { api } = fakeServer();
    const notify = fakeNotifier();
    const model = modelOn(api, { notify });
    await model.refresh();
    api.remove.mockRejectedValueOnce(new SandboxApiError('the sandbox is busy', 409));
    await model.remove();
    expect(notify.messages).toEqual(['error: Delete: the sandbox is busy']);
    expect(model.sandbox?.id).toBe('sbx1');

    await model.remove();
    expect(notify.messages[1]).toBe('info: Sandbox sbx1 was deleted; the next cell starts a fresh one.');
    expect(model.sandbox).toBeNull();
    model.dispose();
  });

  it('keeps expanded folders up to date and folds away one that is gone', async () => {
    const { api, server } = fakeServer();
    const model = modelOn(api);
    await model.refresh();
    await model.toggle(folder('data'));
    expect(model.expandedEntries('data')?.map(e => e.name)).toEqual(['table.csv']);
    server.folders.data.push(file('data/more.csv'));
    await model.refresh();
    expect(model.expandedEntries('data')?.map(e => e.name)).toEqual(['more.csv', 'table.csv']);
    delete server.folders.data;
    await model.refresh();
    expect(model.expandedEntries('data')).toBeUndefined();
    model.dispose();
  });

  it('leaves a folder folded that the person folds while a refresh lists it', async () => {
    const { api } = fakeServer();
    const model = modelOn(api);
    await model.refresh();
    await model.toggle(folder('data'));
    let release: () => void = () => undefined;
    const held = new Promise<void>(resolve => (release = resolve));
    const list = api.list.getMockImplementation()!;
    let listing = false;
    api.list.mockImplementation(async (id: string, path: string) => {
      if (path === 'data') {
        listing = true;
        await held; // the refresh's listing of the folder is under way...
      }
      return list(id, path);
    });
    const refreshing = model.refresh();
    await vi.waitFor(() => expect(listing).toBe(true));
    await model.toggle(folder('data')); // ...when the person folds it
    release();
    await refreshing;
    expect(model.expandedEntries('data')).toBeUndefined();
    model.dispose();
  });

  it('uploads into the shown folder with progress and lists the folder after', async () => {
    const { api } = fakeServer();
    api.upload.mockImplementationOnce(
      async (id: string, path: string, blob: Blob, progress: (l: number, t: number) => void) => {
        progress(2, 4);
      }
    );
    const model = modelOn(api);
    await model.refresh();
    const seen: number[] = [];
    model.changed.connect((_, part) => {
      if (part === 'uploads' && model.uploads.length) {
        seen.push(model.uploads[0].loaded);
      }
    });
    api.list.mockClear();
    await model.upload([new File(['abcd'], 'four.txt')]);
    expect(api.upload.mock.calls[0].slice(0, 2)).toEqual(['sbx1', 'four.txt']);
    expect(seen).toContain(2);
    expect(model.uploads[0]).toMatchObject({ name: 'four.txt', loaded: 4, total: 4 });
    expect(api.list).toHaveBeenCalled();
    model.dispose();
  });

  it('commits with the message typed, then clears it; an empty message is refused', async () => {
    const { api } = fakeServer();
    const notify = fakeNotifier();
    const model = modelOn(api, { notify });
    await model.refresh();
    model.repo = 'repo';
    await model.commit();
    expect(api.gitCommit).not.toHaveBeenCalled();
    model.commitMessage = 'First';
    // No identity given yet: nothing is committed under a made-up name.
    model.identity = null;
    await model.commit();
    expect(api.gitCommit).not.toHaveBeenCalled();
    model.identity = { name: 'Ada Lovelace', email: 'ada@example.org' };
    await model.commit();
    expect(api.gitCommit).toHaveBeenCalledWith('sbx1', 'repo', 'First', 'Ada Lovelace', 'ada@example.org');
    expect(model.commitMessage).toBe('');
    expect(notify.messages).toEqual([
      'error: Commit: write a commit message first',
      'error: Commit: give your name and email first (Git identity)',
      'success: Committed 0123456789'
    ]);
    // Remembered for the next commit, and for the next model (another notebook, a reload).
    expect(modelOn(api).identity).toEqual({ name: 'Ada Lovelace', email: 'ada@example.org' });
    model.identity = null;
    model.dispose();
  });

  it('makes a preview link that carries the token escaped', async () => {
    const { api } = fakeServer();
    const model = modelOn(api);
    await model.refresh();
    expect(await model.previewLink(8123)).toBe('http://127.0.0.1/sandbox/preview/sbx1/8123/?token=t%26k');
    model.dispose();
  });
});
