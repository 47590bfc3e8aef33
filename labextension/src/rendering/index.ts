/**
 * Rich output of the sandbox, rendered where it cannot act: the renderer of the kernel's isolated
 * MIME type, added to JupyterLab's renderer registry, which notebooks, consoles and ipywidgets'
 * Output widgets all render through.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { isolatedRendererFactory } from './renderer';

export { ISOLATED_MIME, IsolatedRenderer, isolatedRendererFactory } from './renderer';

export const renderingPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-sandbox:isolated-output',
  description: "Renders the sandbox's scripted and HTML output in frames with an opaque origin and no network.",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (app: JupyterFrontEnd, rendermime: IRenderMimeRegistry) => {
    rendermime.addFactory(isolatedRendererFactory, isolatedRendererFactory.defaultRank);
  }
};
