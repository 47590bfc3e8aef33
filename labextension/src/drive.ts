/**
 * A JupyterLab contents drive over the sandbox's files, so that a file in the sandbox opens in an
 * ordinary editor tab and saving writes it back through the REST API (as the sandbox user).
 *
 * Paths look like "SandboxFiles:<sandbox id>/<path under /home/sandbox>".
 */
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { IFileEntry, SandboxAPI, SandboxApiError } from './api';
import { baseName, drivePath, joinPath, parentPath, splitDrivePath } from './logic';

export const DRIVE_NAME = 'SandboxFiles';

function isoTime(mtime: number | undefined): string {
  return new Date((mtime || 0) * 1000).toISOString();
}

export class SandboxDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;
  private _changed = new Signal<Contents.IDrive, Contents.IChangedArgs>(this);
  private _disposed = false;

  constructor(private readonly api: SandboxAPI) {}

  get serverSettings(): ServerConnection.ISettings {
    return this.api.settings;
  }

  get fileChanged(): ISignal<Contents.IDrive, Contents.IChangedArgs> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    Signal.clearData(this);
  }

  private model(
    sandboxId: string,
    entry: IFileEntry,
    content: unknown = null,
    format: Contents.FileFormat = null
  ): Contents.IModel {
    const directory = entry.type === 'directory';
    return {
      name: entry.name,
      path: drivePath(sandboxId, entry.path),
      type: directory ? 'directory' : 'file',
      writable: true,
      created: isoTime(entry.mtime),
      last_modified: isoTime(entry.mtime),
      mimetype: directory ? '' : 'text/plain',
      content,
      format,
      size: entry.size
    };
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const { sandboxId, path } = splitDrivePath(localPath);
    const entry = await this.api.info(sandboxId, path || '/home/sandbox');
    if (entry.type === 'directory') {
      if (options?.content === false) {
        return this.model(sandboxId, entry);
      }
      const listing = await this.api.list(sandboxId, path);
      return this.model(
        sandboxId,
        entry,
        listing.entries.map(e => this.model(sandboxId, e)),
        'json'
      );
    }
    if (options?.content === false) {
      return this.model(sandboxId, entry);
    }
    const text = await this.api.readText(sandboxId, path);
    return this.model(sandboxId, entry, text, 'text');
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    const { sandboxId, path } = splitDrivePath(localPath);
    return this.api.url(`sandboxes/${sandboxId}/files/content`, { path });
  }

  async newUntitled(options: Contents.ICreateOptions = {}): Promise<Contents.IModel> {
    const { sandboxId, path } = splitDrivePath(options.path || '');
    const directory = options.type === 'directory';
    const name = directory ? 'untitled' : `untitled${options.ext || '.txt'}`;
    const target = joinPath(path, name);
    if (directory) {
      await this.api.makeFolder(sandboxId, target);
    } else {
      await this.api.writeText(sandboxId, target, '');
    }
    const model = await this.get(drivePath(sandboxId, target), { content: false });
    this._changed.emit({ type: 'new', oldValue: null, newValue: model });
    return model;
  }

  async delete(localPath: string): Promise<void> {
    const { sandboxId, path } = splitDrivePath(localPath);
    await this.api.delete(sandboxId, path, true);
    this._changed.emit({ type: 'delete', oldValue: { path: localPath }, newValue: null });
  }

  async rename(oldLocalPath: string, newLocalPath: string): Promise<Contents.IModel> {
    const from = splitDrivePath(oldLocalPath);
    const to = splitDrivePath(newLocalPath);
    if (from.sandboxId !== to.sandboxId) {
      throw new SandboxApiError('files cannot be moved between sandboxes', 400);
    }
    const entry = await this.api.move(from.sandboxId, from.path, to.path);
    const model = this.model(from.sandboxId, entry);
    this._changed.emit({ type: 'rename', oldValue: { path: oldLocalPath }, newValue: model });
    return model;
  }

  async save(localPath: string, options: Partial<Contents.IModel> = {}): Promise<Contents.IModel> {
    const { sandboxId, path } = splitDrivePath(localPath);
    if (options.type === 'directory') {
      await this.api.makeFolder(sandboxId, path);
    } else {
      let text = '';
      if (typeof options.content === 'string') {
        text = options.format === 'base64' ? atob(options.content) : options.content;
      } else if (options.content !== undefined && options.content !== null) {
        text = JSON.stringify(options.content, null, 1);
      }
      await this.api.writeText(sandboxId, path, text);
    }
    const model = await this.get(localPath, { content: false });
    this._changed.emit({ type: 'save', oldValue: null, newValue: model });
    return model;
  }

  async copy(localPath: string, toLocalDir: string): Promise<Contents.IModel> {
    const { sandboxId, path } = splitDrivePath(localPath);
    const target = splitDrivePath(toLocalDir);
    const text = await this.api.readText(sandboxId, path);
    const name = baseName(path).replace(/(\.[^.]*)?$/, match => `-copy${match}`);
    const destination = joinPath(target.path || parentPath(path), name);
    await this.api.writeText(target.sandboxId, destination, text);
    const model = await this.get(drivePath(target.sandboxId, destination), { content: false });
    this._changed.emit({ type: 'new', oldValue: null, newValue: model });
    return model;
  }

  // The sandbox keeps no checkpoints; the editor's "revert" reloads the file.
  async createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return { id: 'none', last_modified: new Date().toISOString() };
  }

  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return [];
  }

  async restoreCheckpoint(): Promise<void> {
    return;
  }

  async deleteCheckpoint(): Promise<void> {
    return;
  }
}
