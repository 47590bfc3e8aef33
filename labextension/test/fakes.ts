/**
 * A stand-in for the REST client: answers as the server does, records every call, and can be told
 * to fail or to wait. Tests build a SandboxModel on it; nothing here needs JupyterLab.
 */
import { Mock, vi } from 'vitest';

import type { IFileEntry, IGitBranches, IGitStatus, IListing } from '../src/api';
import { SandboxApiError } from '../src/errors';
import { IKernelInfo, ILive, INotifier, ISandboxClient, SandboxModel } from '../src/model';

export const KERNEL: IKernelInfo = { id: 'k-1', name: 'sandbox-python', status: 'idle' };

export function liveSandbox(overrides: Partial<ILive> = {}): ILive {
  return {
    id: 'sbx1',
    name: 'sandbox-sbx1',
    state: 'running',
    image: 'jupyter-sandbox/python:test',
    kernel_id: 'k-1',
    workspace: null,
    created: '2026-01-01T00:00:00Z',
    spec: {},
    network: { mode: 'none' },
    limits: { cpu: 1, memory: 1024 ** 3, pids: 256, disk: 3 * 1024 ** 3 },
    usage: { cpu_seconds: 2.5, memory_bytes: 64 * 1024 ** 2 },
    uptime_seconds: 125,
    ports: [],
    ...overrides
  };
}

export function file(path: string, size = 10): IFileEntry {
  return {
    name: path.slice(path.lastIndexOf('/') + 1),
    path: `/home/sandbox/${path}`,
    type: 'file',
    size,
    mode: '644'
  };
}

export function folder(path: string): IFileEntry {
  return { name: path.slice(path.lastIndexOf('/') + 1), path: `/home/sandbox/${path}`, type: 'directory', mode: '755' };
}

export interface IFakeServer {
  sandbox: ILive | null;
  /** Folder (relative to the home) → its entries; a folder not here answers 404. */
  folders: Record<string, IFileEntry[]>;
  git: IGitStatus;
  branches: IGitBranches;
  /** When set, every sandbox lookup fails with this. */
  failing: Error | null;
}

/** The client's methods, each a mock a test can inspect or tell to answer otherwise. */
export type FakeApi = { [K in keyof ISandboxClient]: Mock<ISandboxClient[K]> };

export function fakeServer(): { server: IFakeServer; api: FakeApi } {
  const server: IFakeServer = {
    sandbox: liveSandbox(),
    folders: { '': [file('notes.txt'), folder('data')], data: [file('data/table.csv')] },
    git: { branch: 'main', ahead: 0, behind: 0, files: [] },
    branches: { branches: ['main'], current: 'main' },
    failing: null
  };
  const listing = (path: string): IListing => {
    const entries = server.folders[path];
    if (!entries) {
      throw new SandboxApiError(`there is no folder ${path}`, 404);
    }
    return { path, entries: entries.map(e => ({ ...e })), truncated: false };
  };
  const lookup = () => {
    if (server.failing) {
      throw server.failing;
    }
  };
  const api = {
    forKernel: vi.fn(async (kernelId: string) => {
      lookup();
      return server.sandbox && server.sandbox.kernel_id === kernelId ? server.sandbox : null;
    }),
    get: vi.fn(async (id: string) => {
      lookup();
      if (!server.sandbox || server.sandbox.id !== id) {
        throw new SandboxApiError(`there is no sandbox ${id}`, 404);
      }
      return { ...server.sandbox };
    }),
    action: vi.fn(async (id: string, action: 'start' | 'stop') => {
      server.sandbox = liveSandbox({ ...server.sandbox, state: action === 'start' ? 'running' : 'exited' });
      return server.sandbox;
    }),
    restart: vi.fn(async () => {
      server.sandbox = liveSandbox({ ...server.sandbox, state: 'running' });
      return server.sandbox;
    }),
    remove: vi.fn(async () => {
      server.sandbox = null;
    }),
    preview: vi.fn(async (id: string, port: number) => ({
      url: `http://127.0.0.1/sandbox/preview/${id}/${port}/`,
      token: 't&k',
      expires_at: ''
    })),
    list: vi.fn(async (id: string, path: string) => listing(path)),
    download: vi.fn(async () => new Blob(['x'])),
    upload: vi.fn(async () => undefined),
    makeFolder: vi.fn(async (id: string, path: string) => {
      server.folders[''].push(folder(path));
      return folder(path);
    }),
    move: vi.fn(async (id: string, source: string, destination: string) => file(destination)),
    chmod: vi.fn(async (id: string, path: string) => file(path)),
    delete: vi.fn(async () => undefined),
    search: vi.fn(async () => ({ files: [], truncated: false })),
    find: vi.fn(async () => ({ matches: [], truncated: false, timed_out: false })),
    gitStatus: vi.fn(async () => server.git),
    gitBranches: vi.fn(async () => server.branches),
    gitClone: vi.fn(async (id: string, url: string, path: string) => ({ path })),
    gitAdd: vi.fn(async () => server.git),
    gitCommit: vi.fn(async () => ({ commit: '0123456789abcdef' })),
    gitCreateBranch: vi.fn(async () => server.branches),
    gitCheckout: vi.fn(async () => server.branches),
    gitDeleteBranch: vi.fn(async () => server.branches),
    gitRemote: vi.fn(async () => ({ output: '' })),
    exec: vi.fn(async () => ({ exit_code: 0, stdout: '', stderr: '', timed_out: false }))
  };
  return { server, api: api as unknown as FakeApi };
}

export function fakeNotifier(): INotifier & { messages: string[] } {
  const messages: string[] = [];
  return {
    messages,
    error: message => messages.push(`error: ${message}`),
    info: message => messages.push(`info: ${message}`),
    success: message => messages.push(`success: ${message}`)
  };
}

/** A model on a fake server, following a notebook whose kernel is `kernel`. */
export function modelOn(
  api: ISandboxClient,
  options: { standby?: () => boolean; kernel?: IKernelInfo | null; notify?: INotifier } = {}
): SandboxModel {
  const model = new SandboxModel({ api, notify: options.notify ?? fakeNotifier(), standby: options.standby });
  const kernel = options.kernel === undefined ? KERNEL : options.kernel;
  model.follow(kernel ? () => kernel : null);
  return model;
}
