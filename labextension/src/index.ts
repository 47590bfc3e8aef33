/**
 * jupyter-sandbox's JupyterLab front end: a "Sandbox" sidebar for the active notebook's sandbox,
 * a contents drive so the sandbox's files open in editor tabs, and a terminal into the sandbox.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IThemeManager, MainAreaWidget } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { SandboxAPI } from './api';
import { renderingPlugin } from './rendering';
import { DRIVE_NAME, SandboxDrive } from './drive';
import { drivePath } from './logic';
import { SandboxSidebar } from './panel';
import { SandboxTerminal } from './terminal';

// A closed box: the notebook's code runs inside one (not a terminal's prompt, which the terminal has).
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
  <g class="jp-icon3" fill="#616161"><path d="M12 2 3 6.5v11L12 22l9-4.5v-11zm0 2.24 6.52 3.26L12 10.76 5.48 7.5zM5
  9.12l6 3v7.64l-6-3zm8 10.64v-7.64l6-3v7.64z"/></g></svg>`;

export const sandboxIcon = new LabIcon({ name: 'jupyter-sandbox:icon', svgstr: ICON_SVG });

const COMMANDS = {
  openFile: 'jupyter-sandbox:open-file',
  terminal: 'jupyter-sandbox:open-terminal',
  show: 'jupyter-sandbox:show-sidebar'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-sandbox:sidebar',
  description: "The active notebook's sandbox: status, files, git, previews and a terminal.",
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  optional: [IThemeManager],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    themes: IThemeManager | null
  ) => {
    const api = new SandboxAPI(app.serviceManager.serverSettings);
    app.serviceManager.contents.addDrive(new SandboxDrive(api));
    const terminals = new Set<SandboxTerminal>();

    app.commands.addCommand(COMMANDS.openFile, {
      label: 'Open a file of the sandbox',
      execute: args => {
        const path = drivePath(String(args.sandboxId), String(args.path));
        return docManager.openOrReveal(`${DRIVE_NAME}:${path}`, 'Editor');
      }
    });

    app.commands.addCommand(COMMANDS.terminal, {
      label: 'Open a terminal in the sandbox',
      execute: args => {
        const terminal = new SandboxTerminal(api, String(args.sandboxId));
        const widget = new MainAreaWidget({ content: terminal });
        widget.id = terminal.id;
        widget.title.label = terminal.title.label;
        widget.title.icon = sandboxIcon;
        terminals.add(terminal);
        terminal.disposed.connect(() => terminals.delete(terminal));
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });

    const sidebar = new SandboxSidebar({
      api,
      tracker,
      openFile: (sandboxId, path) => void app.commands.execute(COMMANDS.openFile, { sandboxId, path }),
      openTerminal: sandboxId => void app.commands.execute(COMMANDS.terminal, { sandboxId })
    });
    sidebar.title.icon = sandboxIcon;
    app.shell.add(sidebar, 'left', { rank: 600 });

    app.commands.addCommand(COMMANDS.show, {
      label: 'Show the sandbox sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });

    themes?.themeChanged.connect(() => {
      for (const terminal of terminals) {
        terminal.refreshTheme();
      }
    });
  }
};

export default [plugin, renderingPlugin];
