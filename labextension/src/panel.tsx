/**
 * The "Sandbox" sidebar's shell: a ReactWidget that follows the active notebook's kernel into the
 * model and draws the components. State and requests live in the model (model.ts); what is drawn
 * lives in components/. Polling stands by while the panel or the browser tab is hidden.
 */
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { SandboxAPI } from './api';
import { SandboxView } from './components';
import { IKernelInfo, INotifier, SandboxModel } from './model';

export interface ISidebarOptions {
  api: SandboxAPI;
  tracker: INotebookTracker;
  openFile: (sandboxId: string, path: string) => void;
  openTerminal: (sandboxId: string) => void;
}

/** The model's messages as JupyterLab notifications. */
const NOTIFIER: INotifier = {
  error: (message, autoClose) => void Notification.error(message, { autoClose }),
  info: (message, autoClose) => void Notification.info(message, { autoClose }),
  success: (message, autoClose) => void Notification.success(message, { autoClose })
};

export class SandboxSidebar extends ReactWidget {
  readonly model: SandboxModel;

  constructor(options: ISidebarOptions) {
    super();
    this.options = options;
    this.tracker = options.tracker;
    this.id = 'jupyter-sandbox-sidebar';
    this.addClass('jp-SandboxSidebar');
    this.title.caption = 'Sandbox';
    this.model = new SandboxModel({
      api: options.api,
      notify: NOTIFIER,
      // Nobody sees the sidebar: no request on the timer until it is shown again.
      standby: () => !this.isVisible || document.hidden
    });
    this.tracker.currentChanged.connect(this.follow, this);
    this.follow();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.model.refresh();
  }

  protected render(): JSX.Element {
    return <SandboxView model={this.model} commands={this.options} />;
  }

  private follow(): void {
    const notebook = this.tracker.currentWidget;
    if (notebook === this.notebook) {
      void this.model.refresh();
      return;
    }
    this.notebook?.sessionContext.kernelChanged.disconnect(this.onKernel, this);
    this.notebook?.sessionContext.statusChanged.disconnect(this.onKernel, this);
    this.notebook = notebook;
    notebook?.sessionContext.kernelChanged.connect(this.onKernel, this);
    notebook?.sessionContext.statusChanged.connect(this.onKernel, this);
    this.model.follow(notebook ? () => kernelOf(notebook) : null);
  }

  private onKernel(): void {
    this.model.kernelChanged();
  }

  private readonly options: ISidebarOptions;
  private readonly tracker: INotebookTracker;
  private notebook: NotebookPanel | null = null;
}

function kernelOf(notebook: NotebookPanel): IKernelInfo {
  const kernel = notebook.sessionContext.session?.kernel;
  return {
    id: kernel?.id || null,
    name: kernel?.name || null,
    status: kernel?.status || 'unknown',
    notebook: notebook.context.path
  };
}
