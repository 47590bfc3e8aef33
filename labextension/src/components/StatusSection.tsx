/**
 * The Status section: state and uptime, image, CPU, memory, disk and network of the sandbox, and
 * its buttons.
 */
import * as React from 'react';

import { describeDisk, formatDuration, formatSize } from '../logic';
import { SandboxModel } from '../model';
import { SandboxActions } from './SandboxActions';
import { ISidebarCommands } from './types';
import { useModel } from './useModel';

export function StatusSection({
  model,
  commands
}: {
  model: SandboxModel;
  commands: ISidebarCommands;
}): JSX.Element | null {
  useModel(model, 'sandbox');
  const sandbox = model.sandbox;
  if (!sandbox) {
    return null;
  }
  const limits = sandbox.limits;
  const usage = sandbox.usage || {};
  const running = sandbox.state === 'running';
  const network = sandbox.network;
  const uptime = running && sandbox.uptime_seconds != null ? `, up ${formatDuration(sandbox.uptime_seconds)}` : '';
  return (
    <details open className="jp-SandboxSidebar-section" data-section="status">
      <summary>Status</summary>
      <dl className="jp-SandboxSidebar-facts">
        <dt>State</dt>
        <dd data-field="state">
          {sandbox.state}
          {uptime}
        </dd>
        <dt>Image</dt>
        <dd title={sandbox.image}>{sandbox.image}</dd>
        {limits && (
          <>
            <dt>CPU</dt>
            <dd>{`${limits.cpu} vCPU${running && usage.cpu_seconds != null ? ` · ${usage.cpu_seconds.toFixed(1)} s used` : ''}`}</dd>
          </>
        )}
        {limits && (
          <>
            <dt>Memory</dt>
            <dd>{`${running && usage.memory_bytes != null ? `${formatSize(usage.memory_bytes)} of ` : ''}${formatSize(limits.memory)}`}</dd>
          </>
        )}
        {limits && (
          <>
            <dt>Disk</dt>
            <dd data-field="disk" title={sandbox.disk?.note}>
              {describeDisk(sandbox.disk, limits.disk, running ? usage.disk_bytes : null)}
            </dd>
          </>
        )}
        {network && (
          <>
            <dt>Network</dt>
            <dd data-field="network">
              {network.mode}
              {network.cidrs && network.cidrs.length ? `: ${network.cidrs.join(', ')}` : ''}
            </dd>
          </>
        )}
      </dl>
      <SandboxActions model={model} commands={commands} />
    </details>
  );
}
