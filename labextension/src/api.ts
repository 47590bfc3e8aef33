/**
 * The sidebar's client of the server extension's REST API (/sandbox/api). Every request carries
 * the Jupyter server's own credentials (token or cookie plus XSRF), via ServerConnection.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { SandboxApiError } from './errors';
import { IGitFile } from './logic';

// Part of the client's public face: callers (the drive) import it from here.
export { SandboxApiError };

export interface ISandbox {
  id: string;
  name: string;
  state: string;
  image: string;
  kernel_id: string | null;
  workspace: string | null;
  created: string;
  spec: Record<string, unknown>;
  network?: { mode: string; cidrs?: string[]; domains?: string[] };
  limits?: { cpu: number; memory: number; pids: number; disk: number };
  last_activity?: string | null;
}

export interface IFileEntry {
  name: string;
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size?: number;
  mode?: string;
  mtime?: number;
  target?: string;
}

export interface IListing {
  path: string;
  entries: IFileEntry[];
  truncated: boolean;
}

export interface IGitStatus {
  branch: string;
  ahead: number;
  behind: number;
  files: IGitFile[];
}

export interface IGitBranches {
  branches: string[];
  current: string | null;
}

export interface IPreview {
  url: string;
  token: string;
  expires_at: string;
}

export interface ICredentials {
  username?: string;
  password?: string;
}

function xsrfToken(): string | null {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : null;
}

export class SandboxAPI {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  url(path: string, query: Record<string, string | undefined> = {}): string {
    const base = URLExt.join(this.settings.baseUrl, 'sandbox/api', path);
    const params = Object.entries(query)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value as string)}`);
    return params.length ? `${base}?${params.join('&')}` : base;
  }

  async request<T>(
    method: string,
    path: string,
    options: { query?: Record<string, string | undefined>; body?: unknown } = {}
  ): Promise<T> {
    const init: RequestInit = { method };
    if (options.body !== undefined) {
      init.body = JSON.stringify(options.body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(path, options.query), init, this.settings);
    } catch (error) {
      throw new SandboxApiError(`the Jupyter server cannot be reached: ${(error as Error).message}`, 0);
    }
    if (!response.ok) {
      throw await SandboxAPI.errorOf(response);
    }
    if (response.status === 204) {
      return {} as T;
    }
    const kind = response.headers.get('Content-Type') || '';
    return (kind.includes('json') ? await response.json() : await response.text()) as T;
  }

  static async errorOf(response: Response): Promise<SandboxApiError> {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.message === 'string') {
        message = body.message;
      }
    } catch {
      // not JSON: keep the status line
    }
    return new SandboxApiError(message, response.status);
  }

  // -- sandboxes -------------------------------------------------------------------------------

  async forKernel(kernelId: string): Promise<ISandbox | null> {
    const answer = await this.request<{ sandboxes: ISandbox[] }>('GET', 'sandboxes', {
      query: { kernel_id: kernelId }
    });
    return answer.sandboxes[0] || null;
  }

  get(id: string): Promise<ISandbox> {
    return this.request('GET', `sandboxes/${id}`);
  }

  action(id: string, action: 'start' | 'stop'): Promise<ISandbox> {
    return this.request('POST', `sandboxes/${id}/${action}`);
  }

  /** A fresh Python process in the sandbox (`hard`: a fresh container on the same home). */
  restart(id: string, hard = false): Promise<ISandbox> {
    return this.request('POST', `sandboxes/${id}/restart`, { body: { hard } });
  }

  remove(id: string): Promise<void> {
    return this.request('DELETE', `sandboxes/${id}`);
  }

  ports(id: string): Promise<{ ports: number[] }> {
    return this.request('GET', `sandboxes/${id}/ports`);
  }

  preview(id: string, port: number): Promise<IPreview> {
    return this.request('POST', `sandboxes/${id}/previews`, { body: { port } });
  }

  // -- files -----------------------------------------------------------------------------------

  list(id: string, path: string): Promise<IListing> {
    return this.request('GET', `sandboxes/${id}/files`, { query: { path: path || undefined } });
  }

  info(id: string, path: string): Promise<IFileEntry> {
    return this.request('GET', `sandboxes/${id}/files/info`, { query: { path } });
  }

  /** A file's bytes as they are (not JSON), in either direction; an error answer throws. */
  private async content(init: RequestInit, query: Record<string, string | undefined>, id: string): Promise<Response> {
    const response = await ServerConnection.makeRequest(
      this.url(`sandboxes/${id}/files/content`, query),
      init,
      this.settings
    );
    if (!response.ok) {
      throw await SandboxAPI.errorOf(response);
    }
    return response;
  }

  async readText(id: string, path: string): Promise<string> {
    return (await this.content({ method: 'GET' }, { path }, id)).text();
  }

  async download(id: string, path: string, folder: boolean): Promise<Blob> {
    return (await this.content({ method: 'GET' }, { path, format: folder ? 'zip' : undefined }, id)).blob();
  }

  async writeText(id: string, path: string, text: string): Promise<void> {
    await this.content({ method: 'PUT', body: text }, { path }, id);
  }

  /** Upload one file with progress (fetch cannot report upload progress; XMLHttpRequest can). */
  upload(id: string, path: string, file: Blob, onProgress: (loaded: number, total: number) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open('PUT', this.url(`sandboxes/${id}/files/content`, { path }));
      if (this.settings.token) {
        request.setRequestHeader('Authorization', `token ${this.settings.token}`);
      }
      const xsrf = xsrfToken();
      if (xsrf) {
        request.setRequestHeader('X-XSRFToken', xsrf);
      }
      request.upload.onprogress = event => onProgress(event.loaded, event.total || file.size);
      request.onload = () => {
        if (request.status >= 200 && request.status < 300) {
          resolve();
          return;
        }
        let message = `${request.status} ${request.statusText}`;
        try {
          message = JSON.parse(request.responseText).message || message;
        } catch {
          // keep the status line
        }
        reject(new SandboxApiError(message, request.status));
      };
      request.onerror = () => reject(new SandboxApiError('the upload was cut off', 0));
      request.send(file);
    });
  }

  makeFolder(id: string, path: string): Promise<IFileEntry> {
    return this.request('POST', `sandboxes/${id}/files/folder`, { body: { path } });
  }

  move(id: string, source: string, destination: string): Promise<IFileEntry> {
    return this.request('POST', `sandboxes/${id}/files/move`, { body: { source, destination } });
  }

  chmod(id: string, path: string, mode: string): Promise<IFileEntry> {
    return this.request('POST', `sandboxes/${id}/files/permissions`, { body: { path, mode } });
  }

  delete(id: string, path: string, recursive: boolean): Promise<void> {
    return this.request('DELETE', `sandboxes/${id}/files`, { query: { path, recursive: recursive ? '1' : '0' } });
  }

  search(id: string, pattern: string, path?: string): Promise<{ files: string[]; truncated: boolean }> {
    return this.request('GET', `sandboxes/${id}/files/search`, { query: { pattern, path } });
  }

  find(
    id: string,
    pattern: string,
    path?: string
  ): Promise<{ matches: { file: string; line: number; content: string }[]; truncated: boolean; timed_out: boolean }> {
    return this.request('GET', `sandboxes/${id}/files/find`, { query: { pattern, path } });
  }

  /** Run a command in the sandbox (in `cwd`, relative to the home) and wait for its end. */
  exec(
    id: string,
    command: string,
    cwd: string,
    timeout = 60
  ): Promise<{ exit_code: number; stdout: string; stderr: string; timed_out: boolean }> {
    return this.request('POST', `sandboxes/${id}/process/exec`, { body: { command, cwd: cwd || undefined, timeout } });
  }

  // -- git -------------------------------------------------------------------------------------

  gitStatus(id: string, repo: string): Promise<IGitStatus> {
    return this.request('GET', `sandboxes/${id}/git/status`, { query: { path: repo } });
  }

  gitBranches(id: string, repo: string): Promise<IGitBranches> {
    return this.request('GET', `sandboxes/${id}/git/branches`, { query: { path: repo } });
  }

  gitClone(id: string, url: string, path: string, credentials: ICredentials): Promise<{ path: string }> {
    return this.request('POST', `sandboxes/${id}/git/clone`, { body: { url, path, ...credentials } });
  }

  gitAdd(id: string, repo: string, files: string[]): Promise<IGitStatus> {
    return this.request('POST', `sandboxes/${id}/git/add`, { body: { path: repo, files } });
  }

  gitCommit(id: string, repo: string, message: string, author: string, email: string): Promise<{ commit: string }> {
    return this.request('POST', `sandboxes/${id}/git/commit`, { body: { path: repo, message, author, email } });
  }

  gitCreateBranch(id: string, repo: string, name: string): Promise<IGitBranches> {
    return this.request('POST', `sandboxes/${id}/git/branches`, { body: { path: repo, name } });
  }

  gitCheckout(id: string, repo: string, name: string): Promise<IGitBranches> {
    return this.request('POST', `sandboxes/${id}/git/checkout`, { body: { path: repo, name } });
  }

  gitDeleteBranch(id: string, repo: string, name: string): Promise<IGitBranches> {
    return this.request('DELETE', `sandboxes/${id}/git/branches`, { query: { path: repo, name } });
  }

  gitRemote(
    id: string,
    repo: string,
    operation: 'push' | 'pull',
    credentials: ICredentials
  ): Promise<{ output: string }> {
    return this.request('POST', `sandboxes/${id}/git/${operation}`, { body: { path: repo, ...credentials } });
  }

  // -- terminal --------------------------------------------------------------------------------

  terminalUrl(id: string, cols: number, rows: number): string {
    const http = this.url(`sandboxes/${id}/pty`, {
      cols: String(cols),
      rows: String(rows),
      token: this.settings.token || undefined
    });
    const wsBase = this.settings.wsUrl;
    return wsBase + http.slice(this.settings.baseUrl.length);
  }
}
