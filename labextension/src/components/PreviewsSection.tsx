/**
 * The Previews section: the ports something listens on in the sandbox, each opening in a new tab
 * through the server's preview proxy.
 */
import * as React from 'react';

import { SandboxModel } from '../model';
import { launchIcon } from './icons';
import { useModel } from './useModel';

/** Open a preview: the tab opens in the click (a popup blocker allows only that), then gets the link. */
export async function openPreview(model: SandboxModel, port: number): Promise<void> {
  const tab = window.open('about:blank', '_blank');
  const link = await model.previewLink(port);
  if (!link) {
    tab?.close();
    return;
  }
  if (tab) {
    // The previewed page must not reach back into JupyterLab's window.
    tab.opener = null;
    tab.location.href = link;
  } else {
    window.open(link, '_blank', 'noopener');
  }
}

export function PreviewsSection({ model }: { model: SandboxModel }): JSX.Element {
  useModel(model, 'sandbox');
  const ports = model.ports;
  return (
    <details open className="jp-SandboxSidebar-section" data-section="previews">
      <summary>Previews</summary>
      {ports.length === 0 && <p className="jp-SandboxSidebar-empty">No web server is listening in the sandbox.</p>}
      <ul aria-label="Listening ports">
        {ports.map(port => (
          <li key={port}>
            <span>port {port}</span>
            <button
              className="jp-mod-styled"
              aria-label={`Open preview of port ${port}`}
              onClick={() => void openPreview(model, port)}
            >
              Open <launchIcon.react tag="span" />
            </button>
          </li>
        ))}
      </ul>
    </details>
  );
}
