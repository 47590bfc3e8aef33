/**
 * The JupyterLab icons the sidebar draws, in one place (so a test can stand them in for plain spans).
 */
export {
  caretRightIcon,
  caretUpIcon,
  closeIcon,
  deleteIcon,
  downloadIcon,
  editIcon,
  fileIcon,
  folderIcon,
  launchIcon,
  lockIcon,
  notebookIcon,
  refreshIcon,
  runIcon,
  stopIcon,
  terminalIcon,
  newFolderIcon,
  fileUploadIcon,
  searchIcon
} from '@jupyterlab/ui-components';
