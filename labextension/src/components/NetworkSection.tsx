/**
 * The Network section: the sandbox's egress policy and the egress gateway's newest connection
 * attempts, blocked ones first in view, so a refused host is seen without reading server logs.
 * Host names in the log come from the sandbox: they are shown as text, never as links or markup.
 */
import * as React from 'react';

import { SandboxAPI } from '../api';
import { SandboxModel } from '../model';
import { useModel } from './useModel';

/** One attempt through the gateway, as GET .../network/log returns it. */
export interface INetworkLogEntry {
  time: number;
  host: string;
  port: number;
  allowed: boolean;
  bytes_sent: number;
  bytes_received: number;
  reason: string;
  intercepted?: boolean;
}

const SHOWN = 20;
const REFRESH_MS = 5000;

function policyText(network: { mode: string; cidrs?: string[]; domains?: string[] } | undefined): string {
  if (!network) {
    return 'unknown';
  }
  if (network.mode !== 'allow') {
    return network.mode;
  }
  const entries = [...(network.domains || []), ...(network.cidrs || [])];
  return `allow: ${entries.join(', ') || 'nothing'}`;
}

function size(bytes: number): string {
  return bytes >= 1e6
    ? `${(bytes / 1e6).toFixed(1)} MB`
    : bytes >= 1e3
      ? `${(bytes / 1e3).toFixed(1)} kB`
      : `${bytes} B`;
}

export function NetworkSection({ model, api }: { model: SandboxModel; api?: SandboxAPI }): JSX.Element {
  useModel(model, 'sandbox');
  const sandbox = model.sandbox;
  const client = React.useMemo(() => api ?? new SandboxAPI(), [api]);
  const [entries, setEntries] = React.useState<INetworkLogEntry[]>([]);
  const [error, setError] = React.useState<string>('');
  const network = sandbox?.network as { mode: string; cidrs?: string[]; domains?: string[] } | undefined;
  const usesGateway = network?.mode === 'allow' && (network.domains || []).length > 0;
  const id = sandbox?.id;

  React.useEffect(() => {
    if (!id || !usesGateway) {
      setEntries([]);
      return;
    }
    let live = true;
    const load = async (): Promise<void> => {
      try {
        const answer = await client.request<{ entries: INetworkLogEntry[] }>('GET', `sandboxes/${id}/network/log`, {
          query: { limit: String(SHOWN) }
        });
        if (live) {
          setEntries(Array.isArray(answer.entries) ? answer.entries : []);
          setError('');
        }
      } catch (err) {
        if (live) {
          setError((err as Error).message);
        }
      }
    };
    void load();
    const timer = window.setInterval(() => void load(), REFRESH_MS);
    return () => {
      live = false;
      window.clearInterval(timer);
    };
  }, [client, id, usesGateway]);

  const newest = [...entries].reverse();
  const blocked = newest.filter(entry => !entry.allowed).length;
  return (
    <details open className="jp-SandboxSidebar-section" data-section="network">
      <summary>Network{blocked ? ` (${blocked} blocked)` : ''}</summary>
      <p className="jp-SandboxSidebar-network-policy">{policyText(network)}</p>
      {!usesGateway && (
        <p className="jp-SandboxSidebar-empty">No domain allow list: connections are not logged by the gateway.</p>
      )}
      {usesGateway && error && <p className="jp-SandboxSidebar-empty">Log unavailable: {error}</p>}
      {usesGateway && !error && newest.length === 0 && (
        <p className="jp-SandboxSidebar-empty">No connections through the gateway yet.</p>
      )}
      <ul aria-label="Connections through the egress gateway">
        {newest.map((entry, index) => (
          <li
            key={`${entry.time}-${index}`}
            className={entry.allowed ? 'jp-SandboxSidebar-allowed' : 'jp-SandboxSidebar-blocked'}
            title={String(entry.reason || '')}
          >
            <span>{entry.allowed ? 'allowed' : 'blocked'}</span>{' '}
            <span>
              {String(entry.host)}:{Number(entry.port)}
            </span>{' '}
            <span>{size(Number(entry.bytes_sent || 0) + Number(entry.bytes_received || 0))}</span>
          </li>
        ))}
      </ul>
    </details>
  );
}
