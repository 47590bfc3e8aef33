/**
 * The Files section: the shown folder with up, refresh, new folder and upload; name and text
 * search; the tree (drop files on it, or on a folder, to upload); and the uploads' progress.
 */
import * as React from 'react';

import { askForm } from '../dialogs';
import { displayPath, percent } from '../logic';
import { SandboxModel } from '../model';
import { fileRows } from './FileTree';
import { caretUpIcon, closeIcon, fileUploadIcon, newFolderIcon, refreshIcon } from './icons';
import { ToolbarButton } from './ToolbarButton';
import { ISidebarCommands } from './types';
import { useModel } from './useModel';

async function newFolder(model: SandboxModel): Promise<void> {
  const values = await askForm('New folder', [{ name: 'name', label: 'Name', value: 'new-folder' }], 'Create');
  if (values) {
    await model.newFolder(values.name);
  }
}

function SearchResults({ model, commands }: { model: SandboxModel; commands: ISidebarCommands }): JSX.Element {
  useModel(model, 'search');
  const id = model.sandbox?.id || '';
  const names = model.searchResults;
  const matches = model.findResults;
  return (
    <>
      {names && (
        <ul className="jp-SandboxSidebar-results" aria-label="Files found">
          {names.length === 0 && <li>nothing found</li>}
          {names.map(path => (
            <li key={path}>
              <button className="jp-SandboxSidebar-link" onClick={() => commands.openFile(id, path)}>
                {displayPath(path)}
              </button>
            </li>
          ))}
        </ul>
      )}
      {matches && (
        <ul className="jp-SandboxSidebar-results" aria-label="Text found">
          {matches.length === 0 && <li>nothing found</li>}
          {matches.map(match => (
            <li key={`${match.file}:${match.line}`}>
              <button className="jp-SandboxSidebar-link" onClick={() => commands.openFile(id, match.file)}>
                {`${displayPath(match.file)}:${match.line}`}
              </button>{' '}
              <code>{match.content.slice(0, 120)}</code>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function Uploads({ model }: { model: SandboxModel }): JSX.Element | null {
  useModel(model, 'uploads');
  const uploads = model.uploads;
  if (uploads.length === 0) {
    return null;
  }
  return (
    <ul className="jp-SandboxSidebar-uploads" aria-label="Uploads">
      {uploads.map((upload, index) => (
        <li key={`${upload.name}-${index}`} data-state={upload.error ? 'failed' : upload.done ? 'done' : 'sending'}>
          <span>{upload.name}</span>
          <progress max={100} value={percent(upload.loaded, upload.total)} aria-label={`Upload of ${upload.name}`} />
          <span>
            {upload.error
              ? 'failed'
              : upload.loaded >= upload.total
                ? 'done'
                : `${percent(upload.loaded, upload.total)} %`}
          </span>
          {upload.error && (
            <ToolbarButton
              icon={closeIcon}
              name={`Dismiss the upload of ${upload.name}`}
              tooltip={upload.error}
              onClick={() => model.dismissUpload(upload)}
            />
          )}
        </li>
      ))}
    </ul>
  );
}

export function FilesSection({ model, commands }: { model: SandboxModel; commands: ISidebarCommands }): JSX.Element {
  useModel(model, 'files');
  const folder = model.folder;
  const folderLabel = displayPath(folder ? `/home/sandbox/${folder}` : '/home/sandbox');
  const search = (kind: 'names' | 'text') => (event: React.KeyboardEvent<HTMLInputElement>) => {
    if (event.key === 'Enter') {
      void model.search(kind, event.currentTarget.value);
    }
  };
  return (
    <details open className="jp-SandboxSidebar-section" data-section="files">
      <summary>Files</summary>
      <div className="jp-SandboxSidebar-toolbar">
        <ToolbarButton
          icon={caretUpIcon}
          name="Up one folder"
          tooltip="Up one folder"
          disabled={!folder}
          onClick={() => void model.goUp()}
        />
        <span className="jp-SandboxSidebar-path" title={folderLabel}>
          {folderLabel}
        </span>
        <ToolbarButton
          icon={refreshIcon}
          name="Refresh files"
          tooltip="Refresh the file list"
          onClick={() => void model.reloadFolder()}
        />
        <ToolbarButton
          icon={newFolderIcon}
          name="New folder"
          tooltip="New folder"
          onClick={() => void newFolder(model)}
        />
        <label
          className="jp-ToolbarButtonComponent jp-Button jp-mod-minimal jp-SandboxSidebar-toolButton jp-SandboxSidebar-uploadButton"
          title="Upload files into this folder (or drop them on the list)"
        >
          <fileUploadIcon.react tag="span" className="jp-ToolbarButtonComponent-icon" />
          <input
            type="file"
            multiple
            aria-label="Upload files"
            onChange={event => {
              const input = event.currentTarget;
              if (input.files) {
                void model.upload(Array.from(input.files));
              }
              input.value = '';
            }}
          />
        </label>
      </div>
      <div className="jp-SandboxSidebar-search">
        <input
          className="jp-mod-styled"
          placeholder="Search names"
          aria-label="Search file names"
          onKeyDown={search('names')}
        />
        <input
          className="jp-mod-styled"
          placeholder="Find text in files"
          aria-label="Find text in files"
          onKeyDown={search('text')}
        />
      </div>
      <SearchResults model={model} commands={commands} />
      <ul
        className="jp-SandboxSidebar-files"
        aria-label="Files in the sandbox"
        onDragOver={event => {
          event.preventDefault();
          event.currentTarget.classList.add('jp-mod-dropTarget');
        }}
        onDragLeave={event => event.currentTarget.classList.remove('jp-mod-dropTarget')}
        onDrop={event => {
          event.preventDefault();
          event.currentTarget.classList.remove('jp-mod-dropTarget');
          if (event.dataTransfer.files.length) {
            void model.upload(Array.from(event.dataTransfer.files));
          }
        }}
      >
        {model.listing.length === 0 && (
          <li className="jp-SandboxSidebar-empty">empty folder — drop files here to upload</li>
        )}
        {fileRows({ model, commands, entries: model.listing, depth: 0 })}
      </ul>
      <Uploads model={model} />
    </details>
  );
}
