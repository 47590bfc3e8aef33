/**
 * The "Sandbox" sidebar: follows the active notebook's kernel and shows its sandbox's status,
 * files, git, previews and a terminal button. State lives in this widget; render() draws it.
 */
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import {
  caretRightIcon,
  caretUpIcon,
  deleteIcon,
  downloadIcon,
  editIcon,
  fileIcon,
  folderIcon,
  launchIcon,
  lockIcon,
  ReactWidget,
  refreshIcon
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { IFileEntry, IGitBranches, IGitStatus, ISandbox, SandboxAPI, SandboxApiError } from './api';
import { askForm, confirm, credentialFields, CREDENTIAL_NOTE } from './dialogs';
import {
  cloneFolder,
  cloneUrlProblem,
  describeDisk,
  describeState,
  displayPath,
  formatDuration,
  formatSize,
  gitChangeLabel,
  groupGitFiles,
  homeRelative,
  IDiskStatus,
  joinPath,
  modeLetters,
  modeProblem,
  nameProblem,
  opensAsText,
  parentPath,
  percent,
  previewLink
} from './logic';

interface IUsage {
  cpu_seconds?: number;
  memory_bytes?: number;
  pids?: number;
  disk_bytes?: number;
}

interface ILive extends ISandbox {
  usage?: IUsage;
  uptime_seconds?: number | null;
  disk?: IDiskStatus;
  ports?: number[];
}

interface IUpload {
  name: string;
  loaded: number;
  total: number;
  error?: string;
}

export interface ISidebarOptions {
  api: SandboxAPI;
  tracker: INotebookTracker;
  openFile: (sandboxId: string, path: string) => void;
  openTerminal: (sandboxId: string) => void;
}

export class SandboxSidebar extends ReactWidget {
  private readonly api: SandboxAPI;
  private readonly tracker: INotebookTracker;
  private readonly options: ISidebarOptions;
  private notebook: NotebookPanel | null = null;
  private sandbox: ILive | null = null;
  private folder = '';
  private listing: IFileEntry[] = [];
  /** Expanded folders of the tree (paths relative to the home) and what is in them. */
  private expanded = new Map<string, IFileEntry[]>();
  private listedFor = '';
  private uploads: IUpload[] = [];
  private searchResults: string[] | null = null;
  private findResults: { file: string; line: number; content: string }[] | null = null;
  private repo = '';
  private git: IGitStatus | null = null;
  private branches: IGitBranches | null = null;
  private gitBusy = '';
  private gitError = '';
  private commitMessage = '';
  private timer = 0;
  private refreshing = false;

  constructor(options: ISidebarOptions) {
    super();
    this.options = options;
    this.api = options.api;
    this.tracker = options.tracker;
    this.id = 'jupyter-sandbox-sidebar';
    this.addClass('jp-SandboxSidebar');
    this.title.caption = 'Sandbox';
    this.tracker.currentChanged.connect(() => this.follow(), this);
    this.follow();
    this.timer = window.setInterval(() => void this.refresh(), 3000);
  }

  dispose(): void {
    window.clearInterval(this.timer);
    super.dispose();
  }

  // -- following the notebook ------------------------------------------------------------------

  private follow(): void {
    const notebook = this.tracker.currentWidget;
    if (notebook !== this.notebook) {
      this.notebook?.sessionContext.kernelChanged.disconnect(this.onKernel, this);
      this.notebook?.sessionContext.statusChanged.disconnect(this.onKernel, this);
      this.notebook = notebook;
      notebook?.sessionContext.kernelChanged.connect(this.onKernel, this);
      notebook?.sessionContext.statusChanged.connect(this.onKernel, this);
      this.sandbox = null;
      this.listing = [];
      this.listedFor = '';
      this.git = null;
      this.branches = null;
    }
    void this.refresh();
  }

  private onKernel(): void {
    void this.refresh();
  }

  private get kernelId(): string | null {
    return this.notebook?.sessionContext.session?.kernel?.id || null;
  }

  private get kernelName(): string | null {
    return this.notebook?.sessionContext.session?.kernel?.name || null;
  }

  private async refresh(): Promise<void> {
    if (this.refreshing || !this.isVisible) {
      this.update();
      return;
    }
    this.refreshing = true;
    try {
      const kernelId = this.kernelId;
      if (!kernelId || this.kernelName !== 'sandbox-python') {
        this.sandbox = null;
        return;
      }
      const found = await this.api.forKernel(kernelId);
      this.sandbox = found ? ((await this.api.get(found.id)) as ILive) : null;
      if (this.sandbox && this.sandbox.state === 'running') {
        if (this.listedFor !== this.sandbox.id) {
          this.listedFor = this.sandbox.id;
          this.folder = '';
        }
        // Files written by cells or the terminal show up without a click.
        await this.loadFolder(this.folder, true);
      }
    } catch (error) {
      // A refresh that fails is tried again in a few seconds; no notification for it.
      console.warn('jupyter-sandbox: refresh failed', error);
    } finally {
      this.refreshing = false;
      this.update();
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  /** Run an action; errors become JupyterLab notifications with the server's message. */
  private async act<T>(what: string, action: () => Promise<T>): Promise<T | undefined> {
    try {
      return await action();
    } catch (error) {
      const message = error instanceof SandboxApiError ? error.message : String(error);
      Notification.error(`${what}: ${message}`, { autoClose: 8000 });
      return undefined;
    } finally {
      this.update();
    }
  }

  // -- status actions --------------------------------------------------------------------------

  private async lifecycle(action: 'start' | 'stop' | 'restart' | 'delete'): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    if (action === 'delete') {
      const sure = await confirm('Delete the sandbox?',
        `Sandbox ${sandbox.id} and every file in /home/sandbox will be deleted. This cannot be undone.`, 'Delete');
      if (!sure) {
        return;
      }
      await this.act('Delete', () => this.api.remove(sandbox.id));
      Notification.info(`Sandbox ${sandbox.id} was deleted; the next cell starts a fresh one.`, { autoClose: 5000 });
      this.sandbox = null;
      this.listedFor = '';
      this.listing = [];
    } else if (action === 'restart') {
      await this.act('Restart', async () => {
        await this.api.action(sandbox.id, 'stop');
        await this.api.action(sandbox.id, 'start');
      });
    } else {
      await this.act(action === 'start' ? 'Start' : 'Stop', () => this.api.action(sandbox.id, action));
    }
    await this.refresh();
  }

  // -- files -----------------------------------------------------------------------------------

  private async loadFolder(folder: string, quiet = false): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    const listing = quiet
      ? await this.api.list(sandbox.id, folder).catch(() => undefined)
      : await this.act('List files', () => this.api.list(sandbox.id, folder));
    if (listing) {
      if (folder !== this.folder) {
        this.expanded.clear();
      }
      this.folder = folder;
      this.listing = sortEntries(listing.entries);
    }
    // Expanded folders follow changes too; one that is gone folds away.
    for (const path of Array.from(this.expanded.keys())) {
      const inner = await this.api.list(sandbox.id, path).catch(() => undefined);
      if (inner) {
        this.expanded.set(path, sortEntries(inner.entries));
      } else {
        this.expanded.delete(path);
      }
    }
  }

  private async toggle(entry: IFileEntry): Promise<void> {
    const path = this.relative(entry);
    if (this.expanded.has(path)) {
      for (const key of Array.from(this.expanded.keys())) {
        if (key === path || key.startsWith(path + '/')) {
          this.expanded.delete(key);
        }
      }
    } else if (this.sandbox) {
      const id = this.sandbox.id;
      const inner = await this.act(`Open ${entry.name}`, () => this.api.list(id, path));
      if (inner) {
        this.expanded.set(path, sortEntries(inner.entries));
      }
    }
    this.update();
  }

  private relative(entry: IFileEntry): string {
    return homeRelative(entry.path);
  }

  private async openEntry(entry: IFileEntry): Promise<void> {
    if (entry.type === 'directory') {
      await this.toggle(entry);
      return;
    }
    if (this.sandbox && opensAsText(entry.name, entry.size)) {
      this.options.openFile(this.sandbox.id, this.relative(entry));
    } else {
      await this.download(entry);
    }
  }

  private async download(entry: IFileEntry): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    const folder = entry.type === 'directory';
    const blob = await this.act('Download', () => this.api.download(sandbox.id, this.relative(entry), folder));
    if (blob) {
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = folder ? `${entry.name}.zip` : entry.name;
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }
  }

  private async rename(entry: IFileEntry): Promise<void> {
    const values = await askForm(`Rename ${entry.name}`, [{ name: 'name', label: 'New name', value: entry.name }], 'Rename');
    if (!values || !this.sandbox) {
      return;
    }
    const problem = nameProblem(values.name);
    if (problem) {
      Notification.error(`Rename: ${problem}`, { autoClose: 5000 });
      return;
    }
    const id = this.sandbox.id;
    const source = this.relative(entry);
    await this.act('Rename', () => this.api.move(id, source, joinPath(parentPath(source), values.name)));
    await this.loadFolder(this.folder);
  }

  private async remove(entry: IFileEntry): Promise<void> {
    if (!this.sandbox) {
      return;
    }
    const id = this.sandbox.id;
    const sure = await confirm(`Delete ${entry.name}?`,
      entry.type === 'directory' ? `The folder ${entry.name} and everything in it will be deleted.` : `${entry.name} will be deleted.`,
      'Delete');
    if (sure) {
      await this.act('Delete', () => this.api.delete(id, this.relative(entry), entry.type === 'directory'));
      await this.loadFolder(this.folder);
    }
  }

  private async permissions(entry: IFileEntry): Promise<void> {
    const values = await askForm(`Permissions of ${entry.name}`,
      [{ name: 'mode', label: 'Mode (octal)', value: entry.mode || '644' }], 'Change');
    if (!values || !this.sandbox) {
      return;
    }
    const problem = modeProblem(values.mode);
    if (problem) {
      Notification.error(`Permissions: ${problem}`, { autoClose: 5000 });
      return;
    }
    const id = this.sandbox.id;
    await this.act('Permissions', () => this.api.chmod(id, this.relative(entry), values.mode.trim()));
    await this.loadFolder(this.folder);
  }

  private async newFolder(): Promise<void> {
    const values = await askForm('New folder', [{ name: 'name', label: 'Name', value: 'new-folder' }], 'Create');
    if (!values || !this.sandbox) {
      return;
    }
    const problem = nameProblem(values.name);
    if (problem) {
      Notification.error(`New folder: ${problem}`, { autoClose: 5000 });
      return;
    }
    const id = this.sandbox.id;
    await this.act('New folder', () => this.api.makeFolder(id, joinPath(this.folder, values.name)));
    await this.loadFolder(this.folder);
  }

  private async upload(files: FileList | File[], into?: string): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    const batch = Array.from(files).map(file => ({ file, state: { name: file.name, loaded: 0, total: file.size } as IUpload }));
    this.uploads = [...this.uploads.filter(u => u.loaded < u.total && !u.error), ...batch.map(b => b.state)];
    this.update();
    for (const { file, state } of batch) {
      try {
        await this.api.upload(sandbox.id, joinPath(into ?? this.folder, file.name), file, (loaded, total) => {
          state.loaded = loaded;
          state.total = total;
          this.update();
        });
        state.loaded = state.total;
      } catch (error) {
        state.error = error instanceof Error ? error.message : String(error);
        Notification.error(`Upload of ${file.name}: ${state.error}`, { autoClose: 8000 });
      }
      this.update();
    }
    await this.loadFolder(this.folder);
    this.update();
  }

  private async search(kind: 'names' | 'text', pattern: string): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox || !pattern.trim()) {
      this.searchResults = null;
      this.findResults = null;
      this.update();
      return;
    }
    if (kind === 'names') {
      const found = await this.act('Search', () => this.api.search(sandbox.id, pattern.includes('*') ? pattern : `*${pattern}*`, this.folder));
      this.searchResults = found ? found.files : null;
      this.findResults = null;
    } else {
      const found = await this.act('Find in files', () => this.api.find(sandbox.id, pattern, this.folder));
      this.findResults = found ? found.matches : null;
      this.searchResults = null;
    }
  }

  // -- git -------------------------------------------------------------------------------------

  private async loadGit(): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    this.gitError = '';
    try {
      this.git = await this.api.gitStatus(sandbox.id, this.repo);
      this.branches = await this.api.gitBranches(sandbox.id, this.repo);
    } catch (error) {
      this.git = null;
      this.branches = null;
      this.gitError = error instanceof Error ? error.message : String(error);
    }
    this.update();
  }

  private async gitTask<T>(label: string, task: () => Promise<T>): Promise<T | undefined> {
    this.gitBusy = label;
    this.update();
    try {
      return await this.act(label, task);
    } finally {
      this.gitBusy = '';
      await this.loadGit();
    }
  }

  private async clone(): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    const values = await askForm('Clone a repository', [
      { name: 'url', label: 'Repository URL', placeholder: 'https://example.org/team/project.git' },
      { name: 'path', label: 'Folder (optional)', placeholder: 'the repository name' },
      ...credentialFields()
    ], 'Clone', CREDENTIAL_NOTE);
    if (!values) {
      return;
    }
    const problem = cloneUrlProblem(values.url);
    if (problem) {
      Notification.error(`Clone: ${problem}`, { autoClose: 5000 });
      return;
    }
    const folder = values.path.trim() || cloneFolder(values.url);
    const done = await this.gitTask('Cloning', () => this.api.gitClone(sandbox.id, values.url.trim(), folder, {
      username: values.username || undefined, password: values.password || undefined }));
    if (done) {
      this.repo = folder;
      Notification.success(`Cloned into ~/${folder}`, { autoClose: 4000 });
      await this.loadGit();
      await this.loadFolder(this.folder);
    }
  }

  private async stage(files: string[]): Promise<void> {
    const sandbox = this.sandbox;
    if (sandbox && files.length) {
      await this.gitTask('Staging', () => this.api.gitAdd(sandbox.id, this.repo, files));
    }
  }

  private async commit(): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    if (!this.commitMessage.trim()) {
      Notification.error('Commit: write a commit message first', { autoClose: 5000 });
      return;
    }
    const done = await this.gitTask('Committing', () =>
      this.api.gitCommit(sandbox.id, this.repo, this.commitMessage, 'Sandbox User', 'sandbox@localhost'));
    if (done) {
      this.commitMessage = '';
      Notification.success(`Committed ${done.commit.slice(0, 10)}`, { autoClose: 4000 });
    }
  }

  private async branch(action: 'create' | 'checkout' | 'delete', name?: string): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    if (action === 'create') {
      const values = await askForm('New branch', [{ name: 'name', label: 'Branch name' }], 'Create');
      if (!values || !values.name.trim()) {
        return;
      }
      await this.gitTask('Creating branch', () => this.api.gitCreateBranch(sandbox.id, this.repo, values.name.trim()));
    } else if (action === 'checkout' && name) {
      await this.gitTask('Checking out', () => this.api.gitCheckout(sandbox.id, this.repo, name));
    } else if (action === 'delete' && name) {
      if (await confirm(`Delete branch ${name}?`, `The branch ${name} will be deleted, also if it is not merged.`, 'Delete')) {
        await this.gitTask('Deleting branch', () => this.api.gitDeleteBranch(sandbox.id, this.repo, name));
      }
    }
  }

  private async remote(operation: 'push' | 'pull'): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    const values = await askForm(operation === 'push' ? 'Push' : 'Pull', credentialFields(),
      operation === 'push' ? 'Push' : 'Pull', CREDENTIAL_NOTE);
    if (!values) {
      return;
    }
    const done = await this.gitTask(operation === 'push' ? 'Pushing' : 'Pulling', () =>
      this.api.gitRemote(sandbox.id, this.repo, operation, { username: values.username || undefined, password: values.password || undefined }));
    if (done) {
      Notification.success(`${operation === 'push' ? 'Pushed' : 'Pulled'}${done.output ? `: ${done.output.trim().slice(0, 200)}` : ''}`, { autoClose: 5000 });
    }
  }

  // -- previews --------------------------------------------------------------------------------

  private async openPreview(port: number): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) {
      return;
    }
    // Open the tab first (a popup blocker allows it only in the click), then point it at the link.
    const tab = window.open('about:blank', '_blank');
    const preview = await this.act(`Preview of port ${port}`, () => this.api.preview(sandbox.id, port));
    if (!preview) {
      tab?.close();
      return;
    }
    const link = previewLink(preview.url, preview.token);
    if (tab) {
      tab.opener = null;
      tab.location.href = link;
    } else {
      window.open(link, '_blank', 'noopener');
    }
  }

  // -- drawing ---------------------------------------------------------------------------------

  protected render(): JSX.Element {
    const kernelStatus = this.notebook?.sessionContext.session?.kernel?.status || 'unknown';
    const state = describeState(this.notebook ? this.kernelName : null, this.sandbox, kernelStatus);
    const sandbox = this.sandbox;
    return (
      <div className="jp-SandboxSidebar-content">
        <header className="jp-SandboxSidebar-header">
          <h2>Sandbox</h2>
          <p role="status" aria-live="polite" className={state.starting ? 'jp-SandboxSidebar-starting' : ''}>
            {state.starting && <span className="jp-SandboxSidebar-spinner" aria-hidden="true" />}
            {state.text}
          </p>
        </header>
        {sandbox && this.renderStatus(sandbox)}
        {sandbox && sandbox.state === 'running' && this.renderFiles(sandbox)}
        {sandbox && sandbox.state === 'running' && this.renderGit()}
        {sandbox && sandbox.state === 'running' && this.renderPreviews(sandbox)}
      </div>
    );
  }

  private renderStatus(sandbox: ILive): JSX.Element {
    const limits = sandbox.limits;
    const usage = sandbox.usage || {};
    const running = sandbox.state === 'running';
    const network = sandbox.network;
    return (
      <details open className="jp-SandboxSidebar-section" data-section="status">
        <summary>Status</summary>
        <dl className="jp-SandboxSidebar-facts">
          <dt>State</dt><dd data-field="state">{sandbox.state}{running && sandbox.uptime_seconds != null ? `, up ${formatDuration(sandbox.uptime_seconds)}` : ''}</dd>
          <dt>Image</dt><dd>{sandbox.image}</dd>
          {limits && <><dt>CPU</dt><dd>{`${limits.cpu} vCPU${running && usage.cpu_seconds != null ? ` · ${usage.cpu_seconds.toFixed(1)} s used` : ''}`}</dd></>}
          {limits && <><dt>Memory</dt><dd>{`${running && usage.memory_bytes != null ? `${formatSize(usage.memory_bytes)} of ` : ''}${formatSize(limits.memory)}`}</dd></>}
          {limits && <><dt>Disk</dt><dd data-field="disk" title={sandbox.disk?.note}>{describeDisk(sandbox.disk, limits.disk, running ? usage.disk_bytes : null)}</dd></>}
          {network && <><dt>Network</dt><dd data-field="network">{network.mode}{network.cidrs && network.cidrs.length ? `: ${network.cidrs.join(', ')}` : ''}</dd></>}
        </dl>
        <div className="jp-SandboxSidebar-buttons">
          {running
            ? <button className="jp-mod-styled" onClick={() => void this.lifecycle('stop')}>Stop</button>
            : <button className="jp-mod-styled" onClick={() => void this.lifecycle('start')}>Start</button>}
          <button className="jp-mod-styled" onClick={() => void this.lifecycle('restart')} disabled={!running}>Restart</button>
          <button className="jp-mod-styled jp-mod-warn" onClick={() => void this.lifecycle('delete')}>Delete…</button>
          <button className="jp-mod-styled" onClick={() => this.options.openTerminal(sandbox.id)} disabled={!running}>Terminal</button>
        </div>
      </details>
    );
  }

  private renderFiles(sandbox: ILive): JSX.Element {
    const folderLabel = displayPath(this.folder ? `/home/sandbox/${this.folder}` : '/home/sandbox');
    return (
      <details open className="jp-SandboxSidebar-section" data-section="files">
        <summary>Files</summary>
        <div className="jp-SandboxSidebar-toolbar">
          <button className="jp-mod-styled" aria-label="Up one folder" disabled={!this.folder}
            onClick={() => void this.loadFolder(parentPath(this.folder)).then(() => this.update())}><caretUpIcon.react tag="span" /></button>
          <span className="jp-SandboxSidebar-path" title={folderLabel}>{folderLabel}</span>
          <button className="jp-mod-styled" aria-label="Refresh files" onClick={() => void this.loadFolder(this.folder).then(() => this.update())}><refreshIcon.react tag="span" /></button>
          <button className="jp-mod-styled" onClick={() => void this.newFolder()}>New folder</button>
          <label className="jp-mod-styled jp-SandboxSidebar-uploadButton">
            Upload
            <input type="file" multiple aria-label="Upload files" onChange={event => {
              const input = event.currentTarget;
              if (input.files) {
                void this.upload(Array.from(input.files));
              }
              input.value = '';
            }} />
          </label>
        </div>
        <div className="jp-SandboxSidebar-search">
          <input className="jp-mod-styled" placeholder="Search names" aria-label="Search file names"
            onKeyDown={event => { if (event.key === 'Enter') { void this.search('names', event.currentTarget.value); } }} />
          <input className="jp-mod-styled" placeholder="Find text in files" aria-label="Find text in files"
            onKeyDown={event => { if (event.key === 'Enter') { void this.search('text', event.currentTarget.value); } }} />
        </div>
        {this.searchResults && (
          <ul className="jp-SandboxSidebar-results" aria-label="Files found">
            {this.searchResults.length === 0 && <li>nothing found</li>}
            {this.searchResults.map(path => (
              <li key={path}><button className="jp-SandboxSidebar-link" onClick={() => this.options.openFile(sandbox.id, path)}>{displayPath(path)}</button></li>
            ))}
          </ul>
        )}
        {this.findResults && (
          <ul className="jp-SandboxSidebar-results" aria-label="Text found">
            {this.findResults.length === 0 && <li>nothing found</li>}
            {this.findResults.map(match => (
              <li key={`${match.file}:${match.line}`}>
                <button className="jp-SandboxSidebar-link" onClick={() => this.options.openFile(sandbox.id, match.file)}>
                  {`${displayPath(match.file)}:${match.line}`}</button> <code>{match.content.slice(0, 120)}</code>
              </li>
            ))}
          </ul>
        )}
        <ul className="jp-SandboxSidebar-files" aria-label="Files in the sandbox"
          onDragOver={event => { event.preventDefault(); event.currentTarget.classList.add('jp-mod-dropTarget'); }}
          onDragLeave={event => event.currentTarget.classList.remove('jp-mod-dropTarget')}
          onDrop={event => {
            event.preventDefault();
            event.currentTarget.classList.remove('jp-mod-dropTarget');
            if (event.dataTransfer.files.length) {
              void this.upload(Array.from(event.dataTransfer.files));
            }
          }}>
          {this.listing.length === 0 && <li className="jp-SandboxSidebar-empty">empty folder — drop files here to upload</li>}
          {this.renderEntries(this.listing, 0)}
        </ul>
        {this.uploads.length > 0 && (
          <ul className="jp-SandboxSidebar-uploads" aria-label="Uploads">
            {this.uploads.map((upload, index) => (
              <li key={`${upload.name}-${index}`}>
                <span>{upload.name}</span>
                <progress max={100} value={percent(upload.loaded, upload.total)} aria-label={`Upload of ${upload.name}`} />
                <span>{upload.error ? 'failed' : upload.loaded >= upload.total ? 'done' : `${percent(upload.loaded, upload.total)} %`}</span>
              </li>
            ))}
          </ul>
        )}
      </details>
    );
  }

  /** The tree as a flat list of rows, indented by depth; an expanded folder's rows follow it. */
  private renderEntries(entries: IFileEntry[], depth: number): JSX.Element[] {
    const rows: JSX.Element[] = [];
    for (const entry of entries) {
      const directory = entry.type === 'directory';
      const path = this.relative(entry);
      const open = directory && this.expanded.has(path);
      rows.push(
        <li key={entry.path} className="jp-SandboxSidebar-file" data-name={entry.name} data-path={path}
          style={{ paddingLeft: `${depth * 14}px` }}
          onDragOver={directory ? event => { event.preventDefault(); event.stopPropagation(); } : undefined}
          onDrop={directory ? event => {
            event.preventDefault();
            event.stopPropagation();
            if (event.dataTransfer.files.length) {
              void this.upload(Array.from(event.dataTransfer.files), path);
            }
          } : undefined}>
          <button className="jp-SandboxSidebar-link" onClick={() => void this.openEntry(entry)}
            onDoubleClick={directory ? () => void this.loadFolder(path).then(() => this.update()) : undefined}
            aria-expanded={directory ? open : undefined}
            title={`${entry.path}${entry.mode ? ` (${modeLetters(entry.mode)})` : ''}${directory ? ' — double-click to make it the top' : ''}`}>
            {directory
              ? <><caretRightIcon.react tag="span" className={`jp-SandboxSidebar-caret${open ? ' jp-mod-open' : ''}`} />
                <folderIcon.react tag="span" className="jp-SandboxSidebar-icon" /></>
              : <fileIcon.react tag="span" className="jp-SandboxSidebar-icon" />}
            {entry.name}
          </button>
          <span className="jp-SandboxSidebar-size">{directory ? '' : formatSize(entry.size)}</span>
          <span className="jp-SandboxSidebar-actions">
            <button aria-label={`Download ${entry.name}`} title="Download" onClick={() => void this.download(entry)}>
              <downloadIcon.react tag="span" /></button>
            <button aria-label={`Rename ${entry.name}`} title="Rename" onClick={() => void this.rename(entry)}>
              <editIcon.react tag="span" /></button>
            <button aria-label={`Permissions of ${entry.name}`} title="Permissions" onClick={() => void this.permissions(entry)}>
              <lockIcon.react tag="span" /></button>
            <button aria-label={`Delete ${entry.name}`} title="Delete" onClick={() => void this.remove(entry)}>
              <deleteIcon.react tag="span" /></button>
          </span>
        </li>
      );
      if (open) {
        const inner = this.expanded.get(path) || [];
        if (inner.length === 0) {
          rows.push(<li key={`${entry.path}/(empty)`} className="jp-SandboxSidebar-empty"
            style={{ paddingLeft: `${(depth + 1) * 14}px` }}>empty</li>);
        }
        rows.push(...this.renderEntries(inner, depth + 1));
      }
    }
    return rows;
  }

  private renderGit(): JSX.Element {
    const git = this.git;
    const groups = git ? groupGitFiles(git.files) : null;
    return (
      <details className="jp-SandboxSidebar-section" data-section="git" onToggle={event => {
        if ((event.currentTarget as HTMLDetailsElement).open) {
          void this.loadGit();
        }
      }}>
        <summary>Git</summary>
        <div className="jp-SandboxSidebar-toolbar">
          <label>Repository <input className="jp-mod-styled" value={this.repo} placeholder="folder under ~" aria-label="Repository folder"
            onChange={event => { this.repo = event.currentTarget.value; this.update(); }}
            onKeyDown={event => { if (event.key === 'Enter') { void this.loadGit(); } }} /></label>
          <button className="jp-mod-styled" onClick={() => void this.clone()}>Clone…</button>
        </div>
        {this.gitBusy && <p role="status" className="jp-SandboxSidebar-starting"><span className="jp-SandboxSidebar-spinner" aria-hidden="true" />{this.gitBusy}…</p>}
        {this.gitError && <p className="jp-SandboxSidebar-error">{this.gitError}</p>}
        {git && groups && (
          <div className="jp-SandboxSidebar-git">
            <p data-field="branch">On <strong>{git.branch || '(no branch)'}</strong>{git.ahead ? ` · ${git.ahead} ahead` : ''}{git.behind ? ` · ${git.behind} behind` : ''}</p>
            {([['Staged', groups.staged, 'index'], ['Changed', groups.unstaged, 'worktree'], ['Untracked', groups.untracked, 'index']] as const).map(([label, files, letter]) => (
              <div key={label} aria-label={`${label} files`}>
                <h3>{label} ({files.length})</h3>
                <ul>
                  {files.map(file => (
                    <li key={`${label}-${file.path}`} data-path={file.path}>
                      <span title={gitChangeLabel(file[letter])}>{file[letter]}</span> {file.path}
                      {label !== 'Staged' && <button aria-label={`Stage ${file.path}`} onClick={() => void this.stage([file.path])}>+</button>}
                    </li>
                  ))}
                </ul>
              </div>
            ))}
            <button className="jp-mod-styled" disabled={!groups.unstaged.length && !groups.untracked.length}
              onClick={() => void this.stage([...groups.unstaged, ...groups.untracked].map(f => f.path))}>Stage all</button>
            <textarea className="jp-mod-styled" placeholder="Commit message" aria-label="Commit message" value={this.commitMessage}
              onChange={event => { this.commitMessage = event.currentTarget.value; this.update(); }} />
            <div className="jp-SandboxSidebar-buttons">
              <button className="jp-mod-styled jp-mod-accept" disabled={!groups.staged.length} onClick={() => void this.commit()}>Commit</button>
              <button className="jp-mod-styled" onClick={() => void this.remote('pull')}>Pull…</button>
              <button className="jp-mod-styled" onClick={() => void this.remote('push')}>Push…</button>
            </div>
            {this.branches && (
              <div aria-label="Branches">
                <h3>Branches</h3>
                <ul>
                  {this.branches.branches.map(name => (
                    <li key={name}>
                      {name === this.branches?.current ? <strong>{name}</strong> : name}
                      {name !== this.branches?.current && <>
                        <button aria-label={`Check out ${name}`} onClick={() => void this.branch('checkout', name)}>check out</button>
                        <button aria-label={`Delete branch ${name}`} onClick={() => void this.branch('delete', name)}>delete</button>
                      </>}
                    </li>
                  ))}
                </ul>
                <button className="jp-mod-styled" onClick={() => void this.branch('create')}>New branch…</button>
              </div>
            )}
          </div>
        )}
      </details>
    );
  }

  private renderPreviews(sandbox: ILive): JSX.Element {
    const ports = sandbox.ports || [];
    return (
      <details open className="jp-SandboxSidebar-section" data-section="previews">
        <summary>Previews</summary>
        {ports.length === 0 && <p className="jp-SandboxSidebar-empty">No web server is listening in the sandbox.</p>}
        <ul aria-label="Listening ports">
          {ports.map(port => (
            <li key={port}>
              <span>port {port}</span>
              <button className="jp-mod-styled" aria-label={`Open preview of port ${port}`} onClick={() => void this.openPreview(port)}>Open <launchIcon.react tag="span" /></button>
            </li>
          ))}
        </ul>
      </details>
    );
  }
}

function sortEntries(entries: IFileEntry[]): IFileEntry[] {
  return entries.sort((a, b) =>
    (a.type === 'directory' ? 0 : 1) - (b.type === 'directory' ? 0 : 1) || a.name.localeCompare(b.name));
}
