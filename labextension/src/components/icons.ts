/**
 * The JupyterLab icons the sidebar draws, in one place (so a test can stand them in for plain spans).
 */
export {
  caretRightIcon,
  caretUpIcon,
  deleteIcon,
  downloadIcon,
  editIcon,
  fileIcon,
  folderIcon,
  launchIcon,
  lockIcon,
  refreshIcon
} from '@jupyterlab/ui-components';
