/**
 * The sandbox's buttons: stop or start, restart (a fresh Python process; the files stay), delete (asks
 * first), and a terminal.
 */
import * as React from 'react';

import { confirm } from '../dialogs';
import { SandboxModel } from '../model';
import { deleteIcon, refreshIcon, runIcon, stopIcon, terminalIcon } from './icons';
import { ToolbarButton } from './ToolbarButton';
import { ISidebarCommands } from './types';

export function SandboxActions({
  model,
  commands
}: {
  model: SandboxModel;
  commands: ISidebarCommands;
}): JSX.Element | null {
  const sandbox = model.sandbox;
  if (!sandbox) {
    return null;
  }
  const running = model.running;
  const remove = async () => {
    const sure = await confirm(
      'Delete the sandbox?',
      `Sandbox ${sandbox.id} and every file in /home/sandbox will be deleted. This cannot be undone.`,
      'Delete'
    );
    if (sure) {
      await model.remove();
    }
  };
  return (
    <div className="jp-SandboxSidebar-buttons jp-Toolbar" role="toolbar" aria-label="Sandbox actions">
      {running ? (
        <ToolbarButton
          icon={stopIcon}
          label="Stop"
          tooltip="Stop the sandbox (its files are kept; the next cell starts it)"
          onClick={() => void model.stop()}
        />
      ) : (
        <ToolbarButton icon={runIcon} label="Start" tooltip="Start the sandbox" onClick={() => void model.start()} />
      )}
      <ToolbarButton
        icon={refreshIcon}
        label="Restart"
        tooltip="A fresh Python process (files are kept, variables are not)"
        disabled={!running}
        onClick={() => void model.restart()}
      />
      <ToolbarButton
        icon={terminalIcon}
        label="Terminal"
        tooltip="A shell in the sandbox, in a new tab"
        disabled={!running}
        onClick={() => commands.openTerminal(sandbox.id)}
      />
      <ToolbarButton
        icon={deleteIcon}
        label="Delete…"
        tooltip="Delete the sandbox and every file in /home/sandbox (asks first)"
        danger
        onClick={() => void remove()}
      />
    </div>
  );
}
