import { describe, expect, it } from 'vitest';

import {
  baseName,
  cloneFolder,
  cloneUrlProblem,
  describeDisk,
  describeState,
  displayPath,
  drivePath,
  formatDuration,
  formatSize,
  groupGitFiles,
  homeRelative,
  joinPath,
  modeLetters,
  modeProblem,
  nameProblem,
  opensAsText,
  parentPath,
  percent,
  previewLink,
  splitDrivePath
} from '../src/logic';

describe('sizes and durations', () => {
  it('formats sizes people read', () => {
    expect(formatSize(0)).toBe('0 B');
    expect(formatSize(1536)).toBe('1.5 KiB');
    expect(formatSize(1024 ** 3)).toBe('1.0 GiB');
    expect(formatSize(3 * 1024 ** 3)).toBe('3.0 GiB');
    expect(formatSize(20 * 1024 ** 2)).toBe('20 MiB');
    expect(formatSize(undefined)).toBe('–');
    expect(formatSize(-1)).toBe('–');
    expect(formatSize(Number.NaN)).toBe('–');
  });

  it('formats uptimes', () => {
    expect(formatDuration(5.7)).toBe('5 s');
    expect(formatDuration(125)).toBe('2 min');
    expect(formatDuration(3725)).toBe('1 h 2 min');
    expect(formatDuration(3 * 86400 + 7200)).toBe('3 d 2 h');
    expect(formatDuration(null)).toBe('–');
  });
});

describe('disk', () => {
  it("shows the home's use beside its limit, bytes and files, where the home is limited", () => {
    const disk = {
      enforced: 'total' as const,
      used_bytes: 12 * 1024 ** 2,
      limit_bytes: 3 * 1024 ** 3,
      used_inodes: 45,
      limit_inodes: 196608
    };
    expect(describeDisk(disk, 3 * 1024 ** 3, 999)).toBe('12 MiB of 3.0 GiB · 45 of 196608 files');
  });
  it('says the total is not limited where only the per-file limit holds', () => {
    const disk = { enforced: 'per-file' as const, used_bytes: null, limit_bytes: null };
    expect(describeDisk(disk, 3 * 1024 ** 3, 1024)).toBe('1.0 KiB used · 3.0 GiB per file (total not limited)');
    expect(describeDisk(undefined, 1024 ** 3, null)).toBe('1.0 GiB per file (total not limited)');
  });
});

describe('paths', () => {
  it('joins and splits', () => {
    expect(joinPath('', 'a.txt')).toBe('a.txt');
    expect(joinPath('data/', '/a.txt')).toBe('data/a.txt');
    expect(parentPath('data/raw/a.txt')).toBe('data/raw');
    expect(parentPath('a.txt')).toBe('');
    expect(parentPath('/etc')).toBe('/');
    expect(baseName('data/raw/')).toBe('raw');
  });

  it('makes paths under the home relative', () => {
    expect(homeRelative('/home/sandbox')).toBe('');
    expect(homeRelative('/home/sandbox/a/b.txt')).toBe('a/b.txt');
    expect(homeRelative('/home/sandboxes/x')).toBe('/home/sandboxes/x');
    expect(homeRelative('notes/a.md')).toBe('notes/a.md');
  });

  it('shows the home as ~', () => {
    expect(displayPath('/home/sandbox')).toBe('~');
    expect(displayPath('/home/sandbox/notes/a.md')).toBe('~/notes/a.md');
    expect(displayPath('/tmp/x')).toBe('/tmp/x');
  });

  it('maps drive paths both ways', () => {
    expect(drivePath('abc123', '/home/sandbox/notes/a.md')).toBe('abc123/notes/a.md');
    expect(drivePath('abc123', 'notes/a.md')).toBe('abc123/notes/a.md');
    expect(drivePath('abc123', '/home/sandbox')).toBe('abc123');
    expect(splitDrivePath('abc123/notes/a.md')).toEqual({ sandboxId: 'abc123', path: 'notes/a.md' });
    expect(splitDrivePath('abc123')).toEqual({ sandboxId: 'abc123', path: '' });
  });
});

describe('checks before a request', () => {
  it('refuses names that are not names', () => {
    expect(nameProblem('report.csv')).toBeNull();
    expect(nameProblem('')).toMatch(/required/);
    expect(nameProblem('..')).toMatch(/not a name/);
    expect(nameProblem('a/b')).toMatch(/"\/"/);
    expect(nameProblem('x'.repeat(256))).toMatch(/255/);
  });

  it('accepts octal modes only', () => {
    expect(modeProblem('644')).toBeNull();
    expect(modeProblem('0755')).toBeNull();
    expect(modeProblem('999')).toMatch(/octal/);
    expect(modeProblem('rwx')).toMatch(/octal/);
    expect(modeLetters('755')).toBe('rwxr-xr-x');
    expect(modeLetters('640')).toBe('rw-r-----');
    expect(modeLetters('bad')).toBe('');
  });

  it('checks clone URLs and picks the folder', () => {
    expect(cloneUrlProblem('https://example.org/team/project.git')).toBeNull();
    expect(cloneUrlProblem('git@example.org:team/project.git')).toBeNull();
    expect(cloneUrlProblem('file:///etc')).toMatch(/https/);
    expect(cloneUrlProblem(' ')).toMatch(/required/);
    expect(cloneFolder('https://example.org/team/project.git')).toBe('project');
    expect(cloneFolder('https://example.org/team/project/')).toBe('project');
  });

  it('opens text files in the editor, others as downloads', () => {
    expect(opensAsText('analysis.py', 100)).toBe(true);
    expect(opensAsText('Makefile', 100)).toBe(true);
    expect(opensAsText('photo.png', 100)).toBe(false);
    expect(opensAsText('huge.csv', 50 * 1024 * 1024)).toBe(false);
  });
});

describe('git', () => {
  it('groups staged, changed and untracked files', () => {
    const groups = groupGitFiles([
      { path: 'b.py', index: 'M', worktree: 'M', staged: true, untracked: false },
      { path: 'a.py', index: ' ', worktree: 'M', staged: false, untracked: false },
      { path: 'new.txt', index: '?', worktree: '?', staged: false, untracked: true },
      { path: 'added.txt', index: 'A', worktree: ' ', staged: true, untracked: false }
    ]);
    expect(groups.staged.map(f => f.path)).toEqual(['added.txt', 'b.py']);
    expect(groups.unstaged.map(f => f.path)).toEqual(['a.py', 'b.py']);
    expect(groups.untracked.map(f => f.path)).toEqual(['new.txt']);
  });
});

describe('state and links', () => {
  it('says what the sidebar shows', () => {
    expect(describeState(null, null, 'idle').text).toMatch(/Open a notebook/);
    expect(describeState('python3', null, 'idle').text).toMatch(/does not use/);
    expect(describeState('sandbox-python', null, 'idle')).toEqual({ text: 'Starting the sandbox…', starting: true });
    expect(describeState('sandbox-python', { id: 'abc', state: 'running' }, 'idle').starting).toBe(false);
    expect(describeState('sandbox-python', { id: 'abc', state: 'exited' }, 'idle').text).toMatch(/next cell starts it/);
  });

  it('puts the token in the preview link', () => {
    expect(previewLink('http://3000-abc.localhost:8888/', 'a.b+c')).toBe(
      'http://3000-abc.localhost:8888/?token=a.b%2Bc'
    );
    expect(previewLink('http://x/?q=1', 't')).toBe('http://x/?q=1&token=t');
    expect(percent(50, 200)).toBe(25);
    expect(percent(5, 0)).toBe(0);
    expect(percent(300, 200)).toBe(100);
  });
});
