/**
 * The Desktop section: the sandbox's virtual desktop (the desktop image). Start or stop it, watch a
 * screenshot that refreshes, and open the live view (noVNC) in a new tab through the preview proxy
 * (its own origin, a preview token): the sidebar never embeds the sandbox's pages.
 */
import * as React from 'react';

import { ServerConnection } from '@jupyterlab/services';

import { SandboxAPI } from '../api';
import { SandboxModel } from '../model';
import { launchIcon } from './icons';
import { useModel } from './useModel';

interface IDesktopStatus {
  status: string;
  width?: number | null;
  height?: number | null;
  available?: boolean;
  vnc?: { novnc_url?: string };
}

const REFRESH_MS = 2000;

export function DesktopSection({ model }: { model: SandboxModel }): JSX.Element {
  useModel(model, 'sandbox');
  const sandboxId = model.sandbox?.id;
  const api = React.useMemo(() => new SandboxAPI(), []);
  const [status, setStatus] = React.useState<IDesktopStatus | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);
  const [image, setImage] = React.useState<string | null>(null);

  const refresh = React.useCallback(async () => {
    if (!sandboxId) {
      return;
    }
    try {
      setStatus(await api.request<IDesktopStatus>('GET', `sandboxes/${sandboxId}/desktop`));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [api, sandboxId]);

  React.useEffect(() => {
    void refresh();
  }, [refresh]);

  const active = status?.status === 'active';
  React.useEffect(() => {
    if (!active || !sandboxId) {
      setImage(null);
      return;
    }
    let stopped = false;
    let current: string | null = null;
    const grab = async (): Promise<void> => {
      try {
        const response = await ServerConnection.makeRequest(
          api.url(`sandboxes/${sandboxId}/desktop/screenshot`, { format: 'jpeg', quality: '60', scale: '0.5' }),
          { method: 'GET' },
          api.settings
        );
        if (response.ok && !stopped) {
          const next = URL.createObjectURL(await response.blob());
          setImage(next);
          if (current) {
            URL.revokeObjectURL(current);
          }
          current = next;
        }
      } catch {
        // the next tick tries again
      }
    };
    void grab();
    const timer = window.setInterval(() => void grab(), REFRESH_MS);
    return () => {
      stopped = true;
      window.clearInterval(timer);
      if (current) {
        URL.revokeObjectURL(current);
      }
    };
  }, [active, api, sandboxId]);

  const act = async (action: 'start' | 'stop'): Promise<void> => {
    if (!sandboxId) {
      return;
    }
    setBusy(true);
    try {
      setStatus(await api.request<IDesktopStatus>('POST', `sandboxes/${sandboxId}/desktop/${action}`, { body: {} }));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const openLiveView = (): void => {
    const link = status?.vnc?.novnc_url;
    if (link) {
      // The desktop's page must not reach back into JupyterLab's window.
      window.open(link, '_blank', 'noopener');
    }
  };

  return (
    <details className="jp-SandboxSidebar-section" data-section="desktop">
      <summary>Desktop</summary>
      {error && <p className="jp-SandboxSidebar-error">{error}</p>}
      <p>
        {active ? `Running (${status?.width}×${status?.height})` : 'Not running'}{' '}
        <button className="jp-mod-styled" disabled={busy} onClick={() => void act(active ? 'stop' : 'start')}>
          {active ? 'Stop' : 'Start'}
        </button>
        {active && (
          <button className="jp-mod-styled" aria-label="Open the desktop's live view" onClick={openLiveView}>
            Live view <launchIcon.react tag="span" />
          </button>
        )}
      </p>
      {active && image && <img className="jp-SandboxSidebar-desktop" alt="The sandbox's desktop" src={image} />}
    </details>
  );
}
