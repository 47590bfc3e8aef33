/**
 * Plain spans in place of JupyterLab's icons: the real ones load all of Lumino's DOM machinery,
 * which jsdom lacks, and a test reads text and roles, not icons.
 */
import * as React from 'react';

function icon(name: string) {
  return {
    react: ({ className }: { tag?: string; className?: string }) => <span data-icon={name} className={className} />
  };
}

export const caretRightIcon = icon('caret-right');
export const caretUpIcon = icon('caret-up');
export const deleteIcon = icon('delete');
export const downloadIcon = icon('download');
export const editIcon = icon('edit');
export const fileIcon = icon('file');
export const folderIcon = icon('folder');
export const launchIcon = icon('launch');
export const lockIcon = icon('lock');
export const refreshIcon = icon('refresh');
export const closeIcon = icon('close');
export const fileUploadIcon = icon('file-upload');
export const newFolderIcon = icon('new-folder');
export const notebookIcon = icon('notebook');
export const runIcon = icon('run');
export const searchIcon = icon('search');
export const stopIcon = icon('stop');
export const terminalIcon = icon('terminal');
