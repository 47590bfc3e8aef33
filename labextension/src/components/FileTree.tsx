/**
 * The file tree: one row per entry, indented by depth, an expanded folder's rows after it. A click
 * opens a text file in an editor tab, downloads anything else, and folds a folder in or out; a
 * double-click makes a folder the top. Names are the sandbox's and are drawn as text only.
 */
import * as React from 'react';

import { IFileEntry } from '../api';
import { askForm, confirm } from '../dialogs';
import { formatSize, modeLetters, opensAsText } from '../logic';
import { SandboxModel } from '../model';
import { caretRightIcon, deleteIcon, downloadIcon, editIcon, fileIcon, folderIcon, lockIcon } from './icons';
import { ISidebarCommands } from './types';

/** Save what the model fetched through the browser's own download. */
export async function downloadEntry(model: SandboxModel, entry: IFileEntry): Promise<void> {
  const blob = await model.download(entry);
  if (blob) {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = entry.type === 'directory' ? `${entry.name}.zip` : entry.name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }
}

async function openEntry(model: SandboxModel, commands: ISidebarCommands, entry: IFileEntry): Promise<void> {
  const sandbox = model.sandbox;
  if (entry.type === 'directory') {
    await model.toggle(entry);
  } else if (sandbox && opensAsText(entry.name, entry.size)) {
    commands.openFile(sandbox.id, model.entryPath(entry));
  } else {
    await downloadEntry(model, entry);
  }
}

async function rename(model: SandboxModel, entry: IFileEntry): Promise<void> {
  const values = await askForm(
    `Rename ${entry.name}`,
    [{ name: 'name', label: 'New name', value: entry.name }],
    'Rename'
  );
  if (values) {
    await model.rename(entry, values.name);
  }
}

async function remove(model: SandboxModel, entry: IFileEntry): Promise<void> {
  const folder = entry.type === 'directory';
  const sure = await confirm(
    `Delete ${entry.name}?`,
    folder ? `The folder ${entry.name} and everything in it will be deleted.` : `${entry.name} will be deleted.`,
    'Delete'
  );
  if (sure) {
    await model.removeEntry(entry);
  }
}

async function permissions(model: SandboxModel, entry: IFileEntry): Promise<void> {
  const values = await askForm(
    `Permissions of ${entry.name}`,
    [{ name: 'mode', label: 'Mode (octal)', value: entry.mode || '644' }],
    'Change'
  );
  if (values) {
    await model.chmod(entry, values.mode);
  }
}

interface ITreeProps {
  model: SandboxModel;
  commands: ISidebarCommands;
  entries: readonly IFileEntry[];
  depth: number;
}

/** The rows of some entries and of the folders among them that are expanded (a flat list). */
export function fileRows({ model, commands, entries, depth }: ITreeProps): JSX.Element[] {
  const rows: JSX.Element[] = [];
  for (const entry of entries) {
    const directory = entry.type === 'directory';
    const path = model.entryPath(entry);
    const inner = directory ? model.expandedEntries(path) : undefined;
    const open = inner !== undefined;
    const drop = (event: React.DragEvent) => {
      event.preventDefault();
      event.stopPropagation();
      if (event.dataTransfer.files.length) {
        void model.upload(Array.from(event.dataTransfer.files), path);
      }
    };
    const title = `${entry.path}${entry.mode ? ` (${modeLetters(entry.mode)})` : ''}${directory ? ' — double-click to make it the top' : ''}`;
    rows.push(
      <li
        key={entry.path}
        className="jp-SandboxSidebar-file"
        data-name={entry.name}
        data-path={path}
        style={{ paddingLeft: `${depth * 14}px` }}
        onDragOver={
          directory
            ? event => {
                event.preventDefault();
                event.stopPropagation();
              }
            : undefined
        }
        onDrop={directory ? drop : undefined}
      >
        <button
          className="jp-SandboxSidebar-link"
          onClick={() => void openEntry(model, commands, entry)}
          onDoubleClick={directory ? () => void model.openFolder(path) : undefined}
          aria-expanded={directory ? open : undefined}
          title={title}
        >
          {directory ? (
            <>
              <caretRightIcon.react tag="span" className={`jp-SandboxSidebar-caret${open ? ' jp-mod-open' : ''}`} />
              <folderIcon.react tag="span" className="jp-SandboxSidebar-icon" />
            </>
          ) : (
            <fileIcon.react tag="span" className="jp-SandboxSidebar-icon" />
          )}
          {entry.name}
        </button>
        <span className="jp-SandboxSidebar-size">{directory ? '' : formatSize(entry.size)}</span>
        <span className="jp-SandboxSidebar-actions">
          <button
            aria-label={`Download ${entry.name}`}
            title="Download"
            onClick={() => void downloadEntry(model, entry)}
          >
            <downloadIcon.react tag="span" />
          </button>
          <button aria-label={`Rename ${entry.name}`} title="Rename" onClick={() => void rename(model, entry)}>
            <editIcon.react tag="span" />
          </button>
          <button
            aria-label={`Permissions of ${entry.name}`}
            title="Permissions"
            onClick={() => void permissions(model, entry)}
          >
            <lockIcon.react tag="span" />
          </button>
          <button aria-label={`Delete ${entry.name}`} title="Delete" onClick={() => void remove(model, entry)}>
            <deleteIcon.react tag="span" />
          </button>
        </span>
      </li>
    );
    if (inner) {
      if (inner.length === 0) {
        rows.push(
          <li
            key={`${entry.path}/(empty)`}
            className="jp-SandboxSidebar-empty"
            style={{ paddingLeft: `${(depth + 1) * 14}px` }}
          >
            empty
          </li>
        );
      }
      rows.push(...fileRows({ model, commands, entries: inner, depth: depth + 1 }));
    }
  }
  return rows;
}
