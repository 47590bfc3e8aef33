/**
 * The sidebar's title and the one status line a person reads first (no notebook, another kernel,
 * starting, running, stopped).
 */
import * as React from 'react';

import { notebookIcon } from './icons';
import { describeState } from '../logic';
import { SandboxModel } from '../model';
import { useModel } from './useModel';

export function Header({ model }: { model: SandboxModel }): JSX.Element {
  useModel(model, 'sandbox');
  const kernel = model.kernel;
  const state = describeState(
    model.hasNotebook ? (kernel?.name ?? null) : null,
    model.sandbox,
    kernel?.status || 'unknown',
    model.deleted
  );
  const path = model.hasNotebook ? kernel?.notebook || '' : '';
  const name = path.split('/').pop() || '';
  return (
    <header className="jp-SandboxSidebar-header">
      <h2>Sandbox</h2>
      {name && (
        <p className="jp-SandboxSidebar-notebook" data-field="notebook" title={path}>
          <notebookIcon.react tag="span" className="jp-SandboxSidebar-notebookIcon" />
          <span className="jp-SandboxSidebar-notebookName">{name}</span>
        </p>
      )}
      <p role="status" aria-live="polite" className={state.starting ? 'jp-SandboxSidebar-starting' : ''}>
        {state.starting && <span className="jp-SandboxSidebar-spinner" aria-hidden="true" />}
        {state.text}
      </p>
    </header>
  );
}
