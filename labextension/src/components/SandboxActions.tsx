/**
 * The sandbox's buttons: stop or start, restart (a fresh Python process; the files stay), delete (asks
 * first), and a terminal.
 */
import * as React from 'react';

import { confirm } from '../dialogs';
import { SandboxModel } from '../model';
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
    <div className="jp-SandboxSidebar-buttons">
      {running ? (
        <button className="jp-mod-styled" onClick={() => void model.stop()}>
          Stop
        </button>
      ) : (
        <button className="jp-mod-styled" onClick={() => void model.start()}>
          Start
        </button>
      )}
      <button className="jp-mod-styled" onClick={() => void model.restart()} disabled={!running}>
        Restart
      </button>
      <button className="jp-mod-styled jp-mod-warn" onClick={() => void remove()}>
        Delete…
      </button>
      <button className="jp-mod-styled" onClick={() => commands.openTerminal(sandbox.id)} disabled={!running}>
        Terminal
      </button>
    </div>
  );
}
