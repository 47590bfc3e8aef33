// @vitest-environment jsdom
/**
 * The sidebar's Network section: the policy, and the gateway's log with blocked attempts counted;
 * host names from the sandbox shown as text, never as markup.
 */
import { act, cleanup, render, screen, waitFor } from '@testing-library/react';
import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { SandboxAPI } from '../src/api';
import { NetworkSection } from '../src/components';
import { SandboxModel } from '../src/model';
import { fakeServer, modelOn } from './fakes';

vi.mock('../src/components/icons', () => import('./stubs/icons'));
// The dialogs pull in JupyterLab's widgets, which need a browser's drag events.
vi.mock('../src/dialogs', () => ({
  CREDENTIAL_NOTE: '',
  credentialFields: () => [],
  confirm: vi.fn(),
  askForm: vi.fn()
}));

let model: SandboxModel | null = null;

afterEach(() => {
  cleanup();
  model?.dispose();
  model = null;
});

describe('the Network section', () => {
  it('shows the allow list and where connections went, blocked ones counted', async () => {
    const fake = fakeServer();
    fake.server.sandbox!.network = { mode: 'allow', domains: ['pypi.org', '*.npmjs.org'], cidrs: ['203.0.113.0/24'] };
    model = modelOn(fake.api);
    const log = {
      entries: [
        { time: 1, host: 'pypi.org', port: 443, allowed: true, bytes_sent: 500, bytes_received: 2500, reason: 'ok' },
        {
          time: 2,
          host: '<img src=x onerror=alert(1)>',
          port: 443,
          allowed: false,
          bytes_sent: 0,
          bytes_received: 0,
          reason: 'not on the list'
        }
      ]
    };
    const api = { request: vi.fn(async () => log) } as unknown as SandboxAPI;
    render(<NetworkSection model={model} api={api} />);
    await act(() => model!.refresh());
    expect(screen.getByText('allow: pypi.org, *.npmjs.org, 203.0.113.0/24')).toBeTruthy();
    await waitFor(() => expect(screen.getByText('Network (1 blocked)')).toBeTruthy());
    expect(screen.getByText('<img src=x onerror=alert(1)>:443')).toBeTruthy();
    expect(document.querySelector('img')).toBeNull();
    expect(screen.getByText('pypi.org:443')).toBeTruthy();
    expect(screen.getByText('3.0 kB')).toBeTruthy();
    expect((api.request as ReturnType<typeof vi.fn>).mock.calls[0]).toEqual([
      'GET',
      `sandboxes/${fake.server.sandbox!.id}/network/log`,
      { query: { limit: '20' } }
    ]);
  });

  it('says when there is no domain list to log', async () => {
    const fake = fakeServer();
    model = modelOn(fake.api);
    const api = { request: vi.fn(async () => ({ entries: [] })) } as unknown as SandboxAPI;
    render(<NetworkSection model={model} api={api} />);
    await act(() => model!.refresh());
    expect(screen.getByText('none')).toBeTruthy();
    expect(screen.getByText(/No domain allow list/)).toBeTruthy();
    expect(api.request).not.toHaveBeenCalled();
  });
});
