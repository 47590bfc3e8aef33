/**
 * The Git section (folded until opened, then read): a repository folder, clone, the branch and
 * its staged, changed and untracked files, staging, commit, pull, push and branches. Credentials
 * asked for here go with one request and are not kept.
 */
import * as React from 'react';

import { askForm, confirm, credentialFields, CREDENTIAL_NOTE } from '../dialogs';
import { gitChangeLabel, groupGitFiles } from '../logic';
import { SandboxModel } from '../model';
import { useModel } from './useModel';

async function clone(model: SandboxModel): Promise<void> {
  const values = await askForm(
    'Clone a repository',
    [
      { name: 'url', label: 'Repository URL', placeholder: 'https://example.org/team/project.git' },
      { name: 'path', label: 'Folder (optional)', placeholder: 'the repository name' },
      ...credentialFields()
    ],
    'Clone',
    CREDENTIAL_NOTE
  );
  if (values) {
    await model.clone({ url: values.url, path: values.path, username: values.username, password: values.password });
  }
}

/** Ask for the name and email commits carry; kept for the next commits (this browser, this server). */
async function askIdentity(model: SandboxModel): Promise<boolean> {
  const known = model.identity;
  const values = await askForm(
    'Your Git identity',
    [
      { name: 'name', label: 'Name', placeholder: 'Ada Lovelace', value: known?.name ?? '' },
      { name: 'email', label: 'Email', placeholder: 'ada@example.org', value: known?.email ?? '' }
    ],
    'Save',
    'Commits made from this sidebar carry this name and email. It is kept in this browser for this server.'
  );
  if (!values || !values.name.trim() || !values.email.trim()) {
    return false;
  }
  model.identity = { name: values.name.trim(), email: values.email.trim() };
  return true;
}

async function commit(model: SandboxModel): Promise<void> {
  if (model.identity || (await askIdentity(model))) {
    await model.commit();
  }
}

async function remote(model: SandboxModel, operation: 'push' | 'pull'): Promise<void> {
  const label = operation === 'push' ? 'Push' : 'Pull';
  const values = await askForm(label, credentialFields(), label, CREDENTIAL_NOTE);
  if (values) {
    await model.remote(operation, { username: values.username, password: values.password });
  }
}

async function newBranch(model: SandboxModel): Promise<void> {
  const values = await askForm('New branch', [{ name: 'name', label: 'Branch name' }], 'Create');
  if (values) {
    await model.createBranch(values.name);
  }
}

async function deleteBranch(model: SandboxModel, name: string): Promise<void> {
  if (
    await confirm(`Delete branch ${name}?`, `The branch ${name} will be deleted, also if it is not merged.`, 'Delete')
  ) {
    await model.deleteBranch(name);
  }
}

function Branches({ model }: { model: SandboxModel }): JSX.Element | null {
  const branches = model.branches;
  if (!branches) {
    return null;
  }
  return (
    <div aria-label="Branches">
      <h3>Branches</h3>
      <ul>
        {branches.branches.map(name => (
          <li key={name}>
            {name === branches.current ? <strong>{name}</strong> : name}
            {name !== branches.current && (
              <>
                <button aria-label={`Check out ${name}`} onClick={() => void model.checkout(name)}>
                  check out
                </button>
                <button aria-label={`Delete branch ${name}`} onClick={() => void deleteBranch(model, name)}>
                  delete
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      <button className="jp-mod-styled" onClick={() => void newBranch(model)}>
        New branch…
      </button>
    </div>
  );
}

export function GitSection({ model }: { model: SandboxModel }): JSX.Element {
  useModel(model, 'git');
  const git = model.git;
  const groups = git ? groupGitFiles(git.files) : null;
  return (
    <details
      className="jp-SandboxSidebar-section"
      data-section="git"
      onToggle={event => {
        if ((event.currentTarget as HTMLDetailsElement).open) {
          void model.loadGit();
        }
      }}
    >
      <summary>Git</summary>
      <div className="jp-SandboxSidebar-toolbar">
        <label>
          Repository{' '}
          <input
            className="jp-mod-styled"
            value={model.repo}
            placeholder="folder under ~"
            aria-label="Repository folder"
            onChange={event => {
              model.repo = event.currentTarget.value;
            }}
            onKeyDown={event => {
              if (event.key === 'Enter') {
                void model.loadGit();
              }
            }}
          />
        </label>
        <button className="jp-mod-styled" onClick={() => void clone(model)}>
          Clone…
        </button>
      </div>
      {model.gitBusy && (
        <p role="status" className="jp-SandboxSidebar-starting">
          <span className="jp-SandboxSidebar-spinner" aria-hidden="true" />
          {model.gitBusy}…
        </p>
      )}
      {model.gitMissing ? (
        <div className="jp-SandboxSidebar-notice" data-field="not-a-repository">
          <p>
            <strong>~/{model.repo || ''}</strong> is not a git repository.
          </p>
          <div className="jp-SandboxSidebar-buttons">
            <button className="jp-mod-styled" onClick={() => void model.initRepository()}>
              Initialise a repository
            </button>
            <button className="jp-mod-styled" onClick={() => void clone(model)}>
              Clone…
            </button>
          </div>
        </div>
      ) : (
        model.gitError && <p className="jp-SandboxSidebar-error">{model.gitError}</p>
      )}
      {git && groups && (
        <div className="jp-SandboxSidebar-git">
          <p data-field="branch">
            On <strong>{git.branch || '(no branch)'}</strong>
            {git.ahead ? ` · ${git.ahead} ahead` : ''}
            {git.behind ? ` · ${git.behind} behind` : ''}
          </p>
          {(
            [
              ['Staged', groups.staged, 'index'],
              ['Changed', groups.unstaged, 'worktree'],
              ['Untracked', groups.untracked, 'index']
            ] as const
          ).map(([label, files, letter]) => (
            <div key={label} aria-label={`${label} files`}>
              <h3>
                {label} ({files.length})
              </h3>
              <ul>
                {files.map(file => (
                  <li key={`${label}-${file.path}`} data-path={file.path}>
                    <span title={gitChangeLabel(file[letter])}>{file[letter]}</span> {file.path}
                    {label !== 'Staged' && (
                      <button aria-label={`Stage ${file.path}`} onClick={() => void model.stage([file.path])}>
                        +
                      </button>
                    )}
                  </li>
                ))}
              </ul>
            </div>
          ))}
          <button
            className="jp-mod-styled"
            disabled={!groups.unstaged.length && !groups.untracked.length}
            onClick={() => void model.stage([...groups.unstaged, ...groups.untracked].map(f => f.path))}
          >
            Stage all
          </button>
          <textarea
            className="jp-mod-styled"
            placeholder="Commit message"
            aria-label="Commit message"
            value={model.commitMessage}
            onChange={event => {
              model.commitMessage = event.currentTarget.value;
            }}
          />
          <div className="jp-SandboxSidebar-buttons">
            <button
              className="jp-mod-styled jp-mod-accept"
              disabled={!groups.staged.length}
              onClick={() => void commit(model)}
            >
              Commit
            </button>
            <button className="jp-mod-styled" onClick={() => void remote(model, 'pull')}>
              Pull…
            </button>
            <button className="jp-mod-styled" onClick={() => void remote(model, 'push')}>
              Push…
            </button>
          </div>
          <p className="jp-SandboxSidebar-identity" data-field="identity">
            {model.identity ? `Commits as ${model.identity.name} <${model.identity.email}>` : 'No Git identity yet'}{' '}
            <button className="jp-SandboxSidebar-link" onClick={() => void askIdentity(model)}>
              {model.identity ? 'change' : 'set'}
            </button>
          </p>
          <Branches model={model} />
        </div>
      )}
    </details>
  );
}
