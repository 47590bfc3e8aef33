/**
 * Pure helpers of the sandbox sidebar: no JupyterLab imports, so they are unit-tested directly.
 */

/** The sandbox's home; relative paths in the API are relative to it. */
export const SANDBOX_HOME = '/home/sandbox';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB"; sizes people read. */
export function formatSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) {
    return '–';
  }
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 10 ? 0 : 1)} ${UNITS[unit]}`;
}

/** What limits the sandbox's writes, as the API's `disk` says it. */
export interface IDiskStatus {
  enforced?: 'total' | 'per-file';
  limit_bytes?: number | null;
  used_bytes?: number | null;
  limit_inodes?: number | null;
  used_inodes?: number | null;
  note?: string;
}

/**
 * The sidebar's Disk line: "12 MiB of 3.0 GiB · 45 of 196608 files" where the home is a filesystem
 * of its own; otherwise the per-file limit and that the total is not limited.
 */
export function describeDisk(disk: IDiskStatus | undefined, limit: number, walked?: number | null): string {
  if (disk?.enforced === 'total' && disk.used_bytes != null && disk.limit_bytes != null) {
    const files =
      disk.used_inodes != null && disk.limit_inodes != null
        ? ` · ${disk.used_inodes} of ${disk.limit_inodes} files`
        : '';
    return `${formatSize(disk.used_bytes)} of ${formatSize(disk.limit_bytes)}${files}`;
  }
  const used = walked != null ? `${formatSize(walked)} used · ` : '';
  return `${used}${formatSize(limit)} per file (total not limited)`;
}

/** 3725 → "1 h 2 min"; uptime as people read it. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '–';
  }
  const s = Math.floor(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours} h ${minutes % 60} min`;
  }
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Join a folder and a name with exactly one slash. */
export function joinPath(folder: string, name: string): string {
  if (!folder) {
    return name;
  }
  return `${folder.replace(/\/+$/, '')}/${name.replace(/^\/+/, '')}`;
}

/** The folder a path is in ('' for a top-level name, '/' for a top-level absolute path). */
export function parentPath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  const index = trimmed.lastIndexOf('/');
  if (index < 0) {
    return '';
  }
  return index === 0 ? '/' : trimmed.slice(0, index);
}

export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/** A path under the home made relative to it ('' for the home itself); other paths as they are. */
export function homeRelative(path: string): string {
  if (path === SANDBOX_HOME) {
    return '';
  }
  return path.startsWith(SANDBOX_HOME + '/') ? path.slice(SANDBOX_HOME.length + 1) : path;
}

/** A path inside the sandbox shown relative to its home when it is under it. */
export function displayPath(path: string): string {
  const relative = homeRelative(path);
  if (relative === path) {
    return path;
  }
  return relative ? `~/${relative}` : '~';
}

/**
 * Why a new file or folder name cannot be used, or null when it can. The server checks again;
 * this only saves a round trip and says it in words.
 */
export function nameProblem(name: string): string | null {
  if (!name.trim()) {
    return 'a name is required';
  }
  if (name === '.' || name === '..') {
    return `"${name}" is not a name`;
  }
  if (name.includes('/')) {
    return 'a name cannot contain "/"';
  }
  if (name.includes('\0')) {
    return 'a name cannot contain a NUL character';
  }
  if (new TextEncoder().encode(name).length > 255) {
    return 'a name may be at most 255 bytes long';
  }
  return null;
}

/** "644", "0755" → the same digits; anything else → null (and the reason, via modeProblem). */
export function modeProblem(mode: string): string | null {
  return /^[0-7]{3,4}$/.test(mode.trim()) ? null : 'permissions are 3 or 4 octal digits, e.g. 644 or 0755';
}

/** rwx letters for an octal mode string ("755" → "rwxr-xr-x"). */
export function modeLetters(mode: string | undefined): string {
  if (!mode || !/^[0-7]{3,4}$/.test(mode)) {
    return '';
  }
  const digits = mode.slice(-3);
  return Array.from(digits)
    .map(d => {
      const n = parseInt(d, 8);
      return `${n & 4 ? 'r' : '-'}${n & 2 ? 'w' : '-'}${n & 1 ? 'x' : '-'}`;
    })
    .join('');
}

const TEXT_EXTENSIONS = new Set([
  'txt',
  'md',
  'py',
  'ipynb',
  'json',
  'yaml',
  'yml',
  'toml',
  'cfg',
  'ini',
  'csv',
  'tsv',
  'js',
  'ts',
  'tsx',
  'jsx',
  'html',
  'css',
  'sh',
  'r',
  'sql',
  'xml',
  'rst',
  'log',
  'c',
  'h',
  'cpp',
  'rs',
  'go',
  'java',
  'env',
  'gitignore',
  'dockerfile',
  'makefile',
  'lock'
]);

/** Whether a file should open in a text editor tab (by its name and size). */
export function opensAsText(name: string, size: number | undefined, maxSize = 5 * 1024 * 1024): boolean {
  if (size !== undefined && size > maxSize) {
    return false;
  }
  const lower = name.toLowerCase();
  const extension = lower.includes('.') ? lower.slice(lower.lastIndexOf('.') + 1) : lower;
  return TEXT_EXTENSIONS.has(extension) || !lower.includes('.');
}

export interface IGitFile {
  path: string;
  index: string;
  worktree: string;
  staged: boolean;
  untracked: boolean;
}

export interface IGitGroups {
  staged: IGitFile[];
  unstaged: IGitFile[];
  untracked: IGitFile[];
}

/** Split `git status` entries into the three lists a person expects. A file staged and changed
 * again appears in both staged and unstaged. */
export function groupGitFiles(files: IGitFile[]): IGitGroups {
  const groups: IGitGroups = { staged: [], unstaged: [], untracked: [] };
  for (const file of files) {
    if (file.untracked) {
      groups.untracked.push(file);
      continue;
    }
    if (file.staged) {
      groups.staged.push(file);
    }
    if (file.worktree !== ' ' && file.worktree !== '') {
      groups.unstaged.push(file);
    }
  }
  for (const list of [groups.staged, groups.unstaged, groups.untracked]) {
    list.sort((a, b) => a.path.localeCompare(b.path));
  }
  return groups;
}

const GIT_LETTERS: Record<string, string> = {
  M: 'modified',
  A: 'added',
  D: 'deleted',
  R: 'renamed',
  C: 'copied',
  U: 'conflict',
  T: 'type changed',
  '?': 'untracked'
};

export function gitChangeLabel(letter: string): string {
  return GIT_LETTERS[letter] || letter;
}

/** Whether a repository URL may be cloned (the server checks again and allows only these). */
export function cloneUrlProblem(url: string): string | null {
  const value = url.trim();
  if (!value) {
    return 'a repository URL is required';
  }
  if (!/^(https?|ssh|git):\/\//i.test(value) && !/^[\w.-]+@[\w.-]+:/.test(value)) {
    return 'use an https://, ssh:// or git:// URL';
  }
  return null;
}

/** The folder a clone lands in by default: the repository's name. */
export function cloneFolder(url: string): string {
  const name = baseName(url.trim().replace(/\/+$/, '')).replace(/\.git$/, '');
  return name.replace(/^.*:/, '') || 'repository';
}

/** A preview address that logs the browser in once: the token goes in the query. */
export function previewLink(url: string, token: string): string {
  const separator = url.includes('?') ? '&' : '?';
  return `${url}${separator}token=${encodeURIComponent(token)}`;
}

export interface ISandboxSummary {
  id: string;
  state: string;
}

/** What the status line of the sidebar says for a kernel and its sandbox. */
export function describeState(
  kernelName: string | null,
  sandbox: ISandboxSummary | null,
  kernelStatus: string,
  deleted = ''
): { text: string; starting: boolean } {
  if (!kernelName) {
    return { text: 'Open a notebook to see its sandbox.', starting: false };
  }
  if (kernelName !== 'sandbox-python') {
    return { text: 'This notebook does not use the sandbox kernel ("Python 3 (sandbox)").', starting: false };
  }
  if (!sandbox) {
    if (kernelStatus === 'dead') {
      return { text: 'The kernel is not running.', starting: false };
    }
    if (deleted && kernelStatus !== 'busy') {
      // Nothing starts until a cell runs: say so rather than spin.
      return { text: `Sandbox ${deleted} was deleted. The next cell you run starts a fresh one.`, starting: false };
    }
    return { text: 'Starting the sandbox…', starting: true };
  }
  if (sandbox.state === 'running') {
    return { text: `Sandbox ${sandbox.id} is running.`, starting: false };
  }
  if (sandbox.state === 'created' || sandbox.state === 'restarting') {
    return { text: `Sandbox ${sandbox.id} is starting…`, starting: true };
  }
  return { text: `Sandbox ${sandbox.id} is ${sandbox.state}; the next cell starts it again.`, starting: false };
}

/** Split a drive path "<sandbox id>/<path in the sandbox>" (paths under the home are relative). */
export function splitDrivePath(localPath: string): { sandboxId: string; path: string } {
  const trimmed = localPath.replace(/^\/+/, '');
  const index = trimmed.indexOf('/');
  if (index < 0) {
    return { sandboxId: trimmed, path: '' };
  }
  return { sandboxId: trimmed.slice(0, index), path: trimmed.slice(index + 1) };
}

/** The drive path of a file in a sandbox (the inverse of splitDrivePath). */
export function drivePath(sandboxId: string, path: string): string {
  const relative = homeRelative(path);
  return relative ? `${sandboxId}/${relative.replace(/^\/+/, '')}` : sandboxId;
}

/** The percentage an upload has reached, 0 to 100, for a progress bar. */
export function percent(loaded: number, total: number): number {
  if (!total || total <= 0) {
    return 0;
  }
  return Math.max(0, Math.min(100, Math.round((loaded / total) * 100)));
}
