/**
 * The sidebar's title and the one status line a person reads first (no notebook, another kernel,
 * starting, running, stopped).
 */
import * as React from 'react';

import { describeState } from '../logic';
import { SandboxModel } from '../model';
import { useModel } from './useModel';

export function Header({ model }: { model: SandboxModel }): JSX.Element {
  useModel(model, 'sandbox');
  const kernel = model.kernel;
  const state = describeState(
    model.hasNotebook ? (kernel?.name ?? null) : null,
    model.sandbox,
    kernel?.status || 'unknown'
  );
  return (
    <header className="jp-SandboxSidebar-header">
      <h2>Sandbox</h2>
      <p role="status" aria-live="polite" className={state.starting ? 'jp-SandboxSidebar-starting' : ''}>
        {state.starting && <span className="jp-SandboxSidebar-spinner" aria-hidden="true" />}
        {state.text}
      </p>
    </header>
  );
}
