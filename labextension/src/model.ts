/**
 * The sidebar's state and everything it does, without a DOM: which sandbox the followed notebook's
 * kernel runs in, its files, uploads, searches and git, fetched through the REST client. Components
 * render from it and call its methods; `changed` tells them which part to draw again.
 *
 * Everything the server answers is data from the sandbox (file names, git output, ports): the model
 * stores it as values and never turns it into markup; React escapes it when it is drawn.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { ICredentials, IFileEntry, IGitBranches, IGitStatus, ISandbox, SandboxAPI } from './api';
import { errorText } from './errors';
import {
  cloneFolder,
  cloneUrlProblem,
  homeRelative,
  IDiskStatus,
  joinPath,
  modeProblem,
  nameProblem,
  parentPath,
  previewLink
} from './logic';

/** The kernel the sidebar follows is the one of this name; others have no sandbox. */
export const SANDBOX_KERNEL = 'sandbox-python';

export interface IUsage {
  cpu_seconds?: number;
  memory_bytes?: number;
  pids?: number;
  disk_bytes?: number;
}

/** A sandbox as `GET /sandboxes/{id}` answers it: the record plus what is live about it. */
export interface ILive extends ISandbox {
  usage?: IUsage;
  uptime_seconds?: number | null;
  disk?: IDiskStatus;
  ports?: number[];
}

export interface IUpload {
  name: string;
  loaded: number;
  total: number;
  error?: string;
  /** The sandbox it goes to: rows are shown for that sandbox only. */
  sandboxId?: string;
  done?: boolean;
}

export interface ITextMatch {
  file: string;
  line: number;
  content: string;
}

/** The followed notebook's kernel as it is now (id, name and status change over its life). */
export interface IKernelInfo {
  id: string | null;
  name: string | null;
  status: string;
  /** The notebook's path in Jupyter's file browser (shown as its name). */
  notebook?: string;
}

/** Where the model tells a person what happened; the shell routes it to JupyterLab's notifications. */
export interface INotifier {
  error(message: string, autoClose: number): void;
  info(message: string, autoClose: number): void;
  success(message: string, autoClose: number): void;
}

/** The REST calls the model makes (the real client, or a fake in tests). */
export type ISandboxClient = Pick<
  SandboxAPI,
  | 'forKernel'
  | 'get'
  | 'action'
  | 'restart'
  | 'remove'
  | 'preview'
  | 'list'
  | 'download'
  | 'upload'
  | 'makeFolder'
  | 'move'
  | 'chmod'
  | 'delete'
  | 'search'
  | 'find'
  | 'gitStatus'
  | 'gitBranches'
  | 'gitClone'
  | 'gitAdd'
  | 'gitCommit'
  | 'gitCreateBranch'
  | 'gitCheckout'
  | 'gitDeleteBranch'
  | 'gitRemote'
  | 'exec'
>;

export namespace SandboxModel {
  /** Which part of the state changed, so a component draws again only for its own part. */
  export type Part = 'sandbox' | 'files' | 'uploads' | 'search' | 'git';

  export interface IOptions {
    api: ISandboxClient;
    notify: INotifier;
    /**
     * Whether polling pauses now (the shell says: the panel or the browser tab is hidden). While it
     * is true no request is made on the timer; refreshes resume when it turns false.
     */
    standby?: () => boolean;
    /** Milliseconds between refreshes while the sidebar is shown (3 s). */
    interval?: number;
    /** The longest wait between refreshes after repeated failures (30 s). */
    maxInterval?: number;
  }

  export interface ICloneForm extends ICredentials {
    url: string;
    path: string;
  }
}

/** How long a finished upload's row stays (ms). */
export const UPLOAD_ROW_LINGER = 2500;

/** Where the person's commit identity is kept: this browser, this Jupyter server (its origin). */
const IDENTITY_KEY = 'jupyter-sandbox:git-identity';

export interface IGitIdentity {
  name: string;
  email: string;
}

/** The page's storage, when there is one (not in a private window, not outside a browser). */
function storage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

/** The identity for this page's life, when no storage keeps it. */
const remembered: { identity: IGitIdentity | null } = { identity: null };

export class SandboxModel {
  constructor(options: SandboxModel.IOptions) {
    this._api = options.api;
    this._notify = options.notify;
    this._standby = options.standby ?? (() => false);
    this._poll = new Poll({
      factory: () => this._lookup(),
      frequency: { interval: options.interval ?? 3000, backoff: true, max: options.maxInterval ?? 30000 },
      name: 'jupyter-sandbox:sidebar',
      standby: this._standby
    });
  }

  /** Emitted with the part of the state that changed. */
  get changed(): ISignal<this, SandboxModel.Part> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    // Disposing rejects the pending tick; nobody waits for it any more.
    this._poll.tick.catch(() => undefined);
    this._poll.dispose();
    Signal.clearData(this);
  }

  // -- the followed notebook ------------------------------------------------------------------

  /** Whether a notebook is followed at all. */
  get hasNotebook(): boolean {
    return this._kernel !== null;
  }

  /** The followed notebook's kernel now (null without a notebook or without a kernel yet). */
  get kernel(): IKernelInfo | null {
    return this._kernel ? this._kernel() : null;
  }

  /**
   * Follow another notebook (null: none). What was shown for the previous one is forgotten at once,
   * so nothing of one notebook's sandbox is drawn under another's.
   */
  follow(kernel: (() => IKernelInfo | null) | null): void {
    this._kernel = kernel;
    this._generation += 1;
    this._sandbox = null;
    this._deleted = '';
    // Upload rows belong to the sandbox they went to: none follows the person to another notebook.
    this._uploads = [];
    this._emit('uploads');
    this._listing = [];
    this._listedFor = '';
    this._git = null;
    this._branches = null;
    this._emit('sandbox', 'files', 'git');
    void this.refresh();
  }

  /** The kernel changed or changed status: draw its state and look its sandbox up again. */
  kernelChanged(): void {
    this._emit('sandbox');
    void this.refresh();
  }

  // -- refreshing -----------------------------------------------------------------------------

  /**
   * Look the sandbox up now (a user action, the panel shown, a kernel event) rather than at the
   * next tick. Never rejects: the poll tries again later, at a growing interval after failures.
   * Resolves once a lookup begun after this call has finished (at once in standby).
   */
  async refresh(): Promise<void> {
    if (this.isDisposed || this._standby()) {
      return;
    }
    // Not through the poll's own refresh: that one is dropped while an earlier one runs, and the
    // answer of a lookup begun before an action would be drawn as if it came after it.
    await this._lookup().catch(() => undefined);
  }

  /**
   * A lookup, never two at once: asked for while one runs (a burst of kernel status changes, an
   * action right after a tick), one more follows it, so what is drawn is newer than the action.
   */
  private _lookup(): Promise<void> {
    if (!this._running) {
      this._running = this._load().finally(() => {
        this._running = null;
      });
      return this._running;
    }
    if (!this._queued) {
      this._queued = this._running
        .catch(() => undefined)
        .then(() => {
          this._queued = null;
          return this._lookup();
        });
    }
    return this._queued;
  }

  /** One lookup; rejects on failure so that the poll backs off. A newer lookup makes it moot. */
  private async _load(): Promise<void> {
    const generation = this._generation;
    const sequence = ++this._sequence;
    const current = () => generation === this._generation && sequence === this._sequence;
    try {
      const kernel = this.kernel;
      if (!kernel?.id || kernel.name !== SANDBOX_KERNEL) {
        this._sandbox = null;
        return;
      }
      const found = await this._api.forKernel(kernel.id);
      const sandbox = found ? ((await this._api.get(found.id)) as ILive) : null;
      if (!current()) {
        return;
      }
      if (sandbox && sandbox.id !== this._sandbox?.id) {
        this._uploads = this._uploads.filter(u => u.sandboxId === sandbox.id);
        this._emit('uploads');
      }
      if (sandbox) {
        this._deleted = '';
      }
      this._sandbox = sandbox;
      if (sandbox && sandbox.state === 'running') {
        if (this._listedFor !== sandbox.id) {
          this._listedFor = sandbox.id;
          this._folder = '';
        }
        // Files written by cells or the terminal show up without a click.
        await this._loadFolder(this._folder, true, current);
      }
    } catch (error) {
      // No notification for a failed refresh: the poll tries again, later each time.
      console.warn('jupyter-sandbox: refresh failed', error);
      throw error;
    } finally {
      if (current()) {
        this._emit('sandbox', 'files');
      }
    }
  }

  // -- the sandbox ----------------------------------------------------------------------------

  /** The followed notebook's sandbox as last fetched (null: none, or not looked up yet). */
  get sandbox(): ILive | null {
    return this._sandbox;
  }

  get running(): boolean {
    return this._sandbox?.state === 'running';
  }

  /** The id of the sandbox deleted from here, until the notebook has a sandbox again ('' otherwise). */
  get deleted(): string {
    return this._deleted;
  }

  async start(): Promise<void> {
    await this._lifecycle('Start', id => this._api.action(id, 'start'));
  }

  async stop(): Promise<void> {
    await this._lifecycle('Stop', id => this._api.action(id, 'stop'));
  }

  /** The sidebar's Restart, as `%sandbox restart`: a fresh Python process; files stay. */
  async restart(): Promise<void> {
    await this._lifecycle('Restart', id => this._api.restart(id));
  }

  /** Delete the sandbox and its home (the caller has asked the person first). */
  async remove(): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return;
    }
    const done = await this._act('Delete', () => this._api.remove(sandbox.id));
    if (done) {
      this._notify.info(`Sandbox ${sandbox.id} was deleted; the next cell starts a fresh one.`, 5000);
      this._sandbox = null;
      this._deleted = sandbox.id;
      this._listedFor = '';
      this._listing = [];
      this._uploads = [];
      this._emit('sandbox', 'files', 'uploads');
    }
    await this.refresh();
  }

  private async _lifecycle(what: string, action: (id: string) => Promise<unknown>): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return;
    }
    await this._act(what, () => action(sandbox.id));
    await this.refresh();
  }

  // -- files ----------------------------------------------------------------------------------

  /** The folder the file list shows, relative to the home ('' is the home). */
  get folder(): string {
    return this._folder;
  }

  get listing(): readonly IFileEntry[] {
    return this._listing;
  }

  /** The entries of an expanded folder (by its path relative to the home), or undefined if folded. */
  expandedEntries(path: string): readonly IFileEntry[] | undefined {
    return this._expanded.get(path);
  }

  /** An entry's path as the API takes it: relative to the home when under it. */
  entryPath(entry: IFileEntry): string {
    return homeRelative(entry.path);
  }

  /** Show a folder (a click on "up", a double-click on a folder, "refresh"). */
  async openFolder(folder: string): Promise<void> {
    await this._loadFolder(folder, false, () => true);
    this._emit('files');
  }

  async goUp(): Promise<void> {
    await this.openFolder(parentPath(this._folder));
  }

  async reloadFolder(): Promise<void> {
    await this.openFolder(this._folder);
  }

  private async _loadFolder(folder: string, quiet: boolean, current: () => boolean): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return;
    }
    const listing = quiet
      ? await this._api.list(sandbox.id, folder).catch(() => undefined)
      : await this._act('List files', () => this._api.list(sandbox.id, folder));
    if (!current()) {
      return;
    }
    if (listing) {
      if (folder !== this._folder) {
        this._expanded.clear();
      }
      this._folder = folder;
      this._listing = sortEntries(listing.entries);
    }
    // Expanded folders follow changes too; one that is gone folds away.
    for (const path of Array.from(this._expanded.keys())) {
      const inner = await this._api.list(sandbox.id, path).catch(() => undefined);
      if (!current()) {
        return;
      }
      if (!this._expanded.has(path)) {
        continue; // folded by the person while it was being listed: it stays folded
      }
      if (inner) {
        this._expanded.set(path, sortEntries(inner.entries));
      } else {
        this._expanded.delete(path);
      }
    }
  }

  /** Fold an expanded folder (and those inside it) or unfold it, listing what is in it. */
  async toggle(entry: IFileEntry): Promise<void> {
    const path = this.entryPath(entry);
    if (this._expanded.has(path)) {
      for (const key of Array.from(this._expanded.keys())) {
        if (key === path || key.startsWith(path + '/')) {
          this._expanded.delete(key);
        }
      }
    } else if (this._sandbox) {
      const id = this._sandbox.id;
      const inner = await this._act(`Open ${entry.name}`, () => this._api.list(id, path));
      if (inner) {
        this._expanded.set(path, sortEntries(inner.entries));
      }
    }
    this._emit('files');
  }

  /** A file's bytes, or a folder's as a zip, for the browser to save; undefined when it failed. */
  async download(entry: IFileEntry): Promise<Blob | undefined> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return undefined;
    }
    return this._act('Download', () =>
      this._api.download(sandbox.id, this.entryPath(entry), entry.type === 'directory')
    );
  }

  async rename(entry: IFileEntry, name: string): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox || !this._valid('Rename', nameProblem(name))) {
      return;
    }
    const source = this.entryPath(entry);
    await this._act('Rename', () => this._api.move(sandbox.id, source, joinPath(parentPath(source), name)));
    await this.reloadFolder();
  }

  async removeEntry(entry: IFileEntry): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return;
    }
    const path = this.entryPath(entry);
    await this._act('Delete', () => this._api.delete(sandbox.id, path, entry.type === 'directory'));
    await this.reloadFolder();
  }

  async chmod(entry: IFileEntry, mode: string): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox || !this._valid('Permissions', modeProblem(mode))) {
      return;
    }
    const path = this.entryPath(entry);
    await this._act('Permissions', () => this._api.chmod(sandbox.id, path, mode.trim()));
    await this.reloadFolder();
  }

  async newFolder(name: string): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox || !this._valid('New folder', nameProblem(name))) {
      return;
    }
    const path = joinPath(this._folder, name);
    await this._act('New folder', () => this._api.makeFolder(sandbox.id, path));
    await this.reloadFolder();
  }

  get uploads(): readonly IUpload[] {
    const id = this._sandbox?.id;
    return this._uploads.filter(u => u.sandboxId === id);
  }

  /** Take an upload's row away (a finished one does so by itself). */
  dismissUpload(upload: IUpload): void {
    if (this._uploads.includes(upload)) {
      this._uploads = this._uploads.filter(u => u !== upload);
      this._emit('uploads');
    }
  }

  /** Upload files into the shown folder (or `into`), one after another, with progress. */
  async upload(files: File[], into?: string): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return;
    }
    const batch = files.map(file => ({
      file,
      state: { name: file.name, loaded: 0, total: file.size, sandboxId: sandbox.id } as IUpload
    }));
    // Finished and failed uploads of earlier batches make room for this one's.
    this._uploads = [...this._uploads.filter(u => u.loaded < u.total && !u.error), ...batch.map(b => b.state)];
    this._emit('uploads');
    for (const { file, state } of batch) {
      try {
        await this._api.upload(sandbox.id, joinPath(into ?? this._folder, file.name), file, (loaded, total) => {
          state.loaded = loaded;
          state.total = total;
          this._emit('uploads');
        });
        state.loaded = state.total;
        state.done = true;
        // A finished row says so for a moment, then makes room; a failed one stays until dismissed.
        setTimeout(() => this.dismissUpload(state), UPLOAD_ROW_LINGER);
      } catch (error) {
        state.error = error instanceof Error ? error.message : String(error);
        this._notify.error(`Upload of ${file.name}: ${state.error}`, 8000);
      }
      this._emit('uploads');
    }
    await this.reloadFolder();
  }

  /** Names found by the last name search (null: none asked, or cleared). */
  get searchResults(): readonly string[] | null {
    return this._searchResults;
  }

  /** Lines found by the last text search (null: none asked, or cleared). */
  get findResults(): readonly ITextMatch[] | null {
    return this._findResults;
  }

  /** Search names (a glob; a bare word matches anywhere in a name) or text under the shown folder. */
  async search(kind: 'names' | 'text', pattern: string): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox || !pattern.trim()) {
      this._searchResults = null;
      this._findResults = null;
    } else if (kind === 'names') {
      const glob = pattern.includes('*') ? pattern : `*${pattern}*`;
      const found = await this._act('Search', () => this._api.search(sandbox.id, glob, this._folder));
      this._searchResults = found ? found.files : null;
      this._findResults = null;
    } else {
      const found = await this._act('Find in files', () => this._api.find(sandbox.id, pattern, this._folder));
      this._findResults = found ? found.matches : null;
      this._searchResults = null;
    }
    this._emit('search');
  }

  // -- git ------------------------------------------------------------------------------------

  /** The repository folder the git section works on, relative to the home ('' is the home). */
  get repo(): string {
    return this._repo;
  }

  set repo(value: string) {
    this._repo = value;
    this._emit('git');
  }

  get commitMessage(): string {
    return this._commitMessage;
  }

  set commitMessage(value: string) {
    this._commitMessage = value;
    this._emit('git');
  }

  get git(): IGitStatus | null {
    return this._git;
  }

  get branches(): IGitBranches | null {
    return this._branches;
  }

  /** What git is doing now ("Cloning"), or ''. */
  get gitBusy(): string {
    return this._gitBusy;
  }

  /** Why the repository could not be read, or ''. */
  get gitError(): string {
    return this._gitError;
  }

  async loadGit(): Promise<void> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return;
    }
    this._gitError = '';
    this._gitMissing = false;
    try {
      this._git = await this._api.gitStatus(sandbox.id, this._repo);
      this._branches = await this._api.gitBranches(sandbox.id, this._repo);
    } catch (error) {
      this._git = null;
      this._branches = null;
      this._gitError = error instanceof Error ? error.message : String(error);
      this._gitMissing = /is not a git repository/.test(this._gitError);
    }
    this._emit('git');
  }

  /** The repository folder is a folder, but no repository: the section offers init and clone. */
  get gitMissing(): boolean {
    return this._gitMissing;
  }

  /** `git init` in the repository folder (the home when none is named). */
  async initRepository(): Promise<void> {
    const folder = this._repo;
    const done = await this._gitTask('Initialising', async id => {
      const result = await this._api.exec(id, 'git init --quiet', folder);
      if (result.exit_code !== 0) {
        throw new Error(result.stderr.trim() || `git init exited with code ${result.exit_code}`);
      }
      return result;
    });
    if (done) {
      this._notify.success(`Initialised a git repository in ~/${folder}`, 4000);
    }
  }

  /** The name and email commits carry, as the person gave them (null: not asked yet). */
  get identity(): IGitIdentity | null {
    const kept = storage();
    if (!kept) {
      return remembered.identity;
    }
    try {
      const value = JSON.parse(kept.getItem(IDENTITY_KEY) ?? 'null');
      return value && typeof value.name === 'string' && typeof value.email === 'string'
        ? { name: value.name, email: value.email }
        : null;
    } catch {
      return null;
    }
  }

  set identity(value: IGitIdentity | null) {
    remembered.identity = value ? { name: value.name, email: value.email } : null;
    try {
      if (value) {
        storage()?.setItem(IDENTITY_KEY, JSON.stringify(remembered.identity));
      } else {
        storage()?.removeItem(IDENTITY_KEY);
      }
    } catch {
      // Storage full or refused: kept for this page only.
    }
    this._emit('git');
  }

  private async _gitTask<T>(label: string, task: (id: string) => Promise<T>): Promise<T | undefined> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return undefined;
    }
    this._gitBusy = label;
    this._emit('git');
    try {
      return await this._act(label, () => task(sandbox.id));
    } finally {
      this._gitBusy = '';
      await this.loadGit();
    }
  }

  /** Clone a repository into a folder of the home (its name by default), then work on it. */
  async clone(form: SandboxModel.ICloneForm): Promise<void> {
    if (!this._sandbox || !this._valid('Clone', cloneUrlProblem(form.url))) {
      return;
    }
    const folder = form.path.trim() || cloneFolder(form.url);
    const credentials = { username: form.username || undefined, password: form.password || undefined };
    const done = await this._gitTask('Cloning', id => this._api.gitClone(id, form.url.trim(), folder, credentials));
    if (done) {
      this._repo = folder;
      this._notify.success(`Cloned into ~/${folder}`, 4000);
      await this.loadGit();
      await this.reloadFolder();
    }
  }

  async stage(files: string[]): Promise<void> {
    if (files.length) {
      await this._gitTask('Staging', id => this._api.gitAdd(id, this._repo, files));
    }
  }

  /** Commit as `author` (the section asks the person for it once and keeps it, see `identity`). */
  async commit(author: IGitIdentity | null = this.identity): Promise<void> {
    if (!this._sandbox) {
      return;
    }
    if (!this._commitMessage.trim()) {
      this._notify.error('Commit: write a commit message first', 5000);
      return;
    }
    if (!author || !author.name.trim() || !author.email.trim()) {
      this._notify.error('Commit: give your name and email first (Git identity)', 5000);
      return;
    }
    const message = this._commitMessage;
    const done = await this._gitTask('Committing', id =>
      this._api.gitCommit(id, this._repo, message, author.name.trim(), author.email.trim())
    );
    if (done) {
      this._commitMessage = '';
      this._notify.success(`Committed ${done.commit.slice(0, 10)}`, 4000);
      this._emit('git');
    }
  }

  async createBranch(name: string): Promise<void> {
    if (name.trim()) {
      await this._gitTask('Creating branch', id => this._api.gitCreateBranch(id, this._repo, name.trim()));
    }
  }

  async checkout(name: string): Promise<void> {
    await this._gitTask('Checking out', id => this._api.gitCheckout(id, this._repo, name));
  }

  async deleteBranch(name: string): Promise<void> {
    await this._gitTask('Deleting branch', id => this._api.gitDeleteBranch(id, this._repo, name));
  }

  /** Push or pull with credentials used for this request only. */
  async remote(operation: 'push' | 'pull', credentials: ICredentials): Promise<void> {
    const given = { username: credentials.username || undefined, password: credentials.password || undefined };
    const done = await this._gitTask(operation === 'push' ? 'Pushing' : 'Pulling', id =>
      this._api.gitRemote(id, this._repo, operation, given)
    );
    if (done) {
      const said = done.output ? `: ${done.output.trim().slice(0, 200)}` : '';
      this._notify.success(`${operation === 'push' ? 'Pushed' : 'Pulled'}${said}`, 5000);
    }
  }

  // -- previews -------------------------------------------------------------------------------

  /** The ports something listens on in the sandbox, as last fetched. */
  get ports(): readonly number[] {
    return this._sandbox?.ports || [];
  }

  /** A preview address of a port that logs the browser in once; undefined when it failed. */
  async previewLink(port: number): Promise<string | undefined> {
    const sandbox = this._sandbox;
    if (!sandbox) {
      return undefined;
    }
    const preview = await this._act(`Preview of port ${port}`, () => this._api.preview(sandbox.id, port));
    return preview ? previewLink(preview.url, preview.token) : undefined;
  }

  // -- helpers --------------------------------------------------------------------------------

  /** Run an action; a failure becomes a notification with the server's message (and undefined). */
  private async _act<T>(what: string, action: () => Promise<T>): Promise<T | undefined> {
    try {
      const result = await action();
      // A call that answers nothing (204) still succeeded: say so with a value.
      return result === undefined ? ({} as T) : result;
    } catch (error) {
      this._notify.error(`${what}: ${errorText(error)}`, 8000);
      return undefined;
    }
  }

  /** Whether input passed the front end's check; if not, the person is told why. */
  private _valid(what: string, problem: string | null): boolean {
    if (problem) {
      this._notify.error(`${what}: ${problem}`, 5000);
      return false;
    }
    return true;
  }

  private _emit(...parts: SandboxModel.Part[]): void {
    for (const part of parts) {
      this._changed.emit(part);
    }
  }

  private readonly _api: ISandboxClient;
  private readonly _notify: INotifier;
  private readonly _poll: Poll;
  private readonly _standby: () => boolean;
  private readonly _changed = new Signal<this, SandboxModel.Part>(this);
  private _kernel: (() => IKernelInfo | null) | null = null;
  /** Bumped when another notebook is followed: lookups begun before it are dropped. */
  private _generation = 0;
  /** Bumped per lookup: only the newest one writes its answer. */
  private _sequence = 0;
  private _running: Promise<void> | null = null;
  private _queued: Promise<void> | null = null;
  private _sandbox: ILive | null = null;
  private _folder = '';
  private _listing: IFileEntry[] = [];
  /** Expanded folders of the tree (paths relative to the home) and what is in them. */
  private readonly _expanded = new Map<string, IFileEntry[]>();
  private _listedFor = '';
  private _uploads: IUpload[] = [];
  private _deleted = '';
  private _gitMissing = false;
  private _searchResults: string[] | null = null;
  private _findResults: ITextMatch[] | null = null;
  private _repo = '';
  private _git: IGitStatus | null = null;
  private _branches: IGitBranches | null = null;
  private _gitBusy = '';
  private _gitError = '';
  private _commitMessage = '';
}

function sortEntries(entries: IFileEntry[]): IFileEntry[] {
  return entries.sort(
    (a, b) => (a.type === 'directory' ? 0 : 1) - (b.type === 'directory' ? 0 : 1) || a.name.localeCompare(b.name)
  );
}
