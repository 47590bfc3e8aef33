/**
 * The whole sidebar: the header always, the sandbox's sections when it has one (files, git and
 * previews only while it runs).
 */
import * as React from 'react';

import { SandboxModel } from '../model';
import { FilesSection } from './FilesSection';
import { GitSection } from './GitSection';
import { Header } from './Header';
import { NetworkSection } from './NetworkSection';
import { PreviewsSection } from './PreviewsSection';
import { StatusSection } from './StatusSection';
import { ISidebarCommands } from './types';
import { useModel } from './useModel';

export function SandboxView({ model, commands }: { model: SandboxModel; commands: ISidebarCommands }): JSX.Element {
  useModel(model, 'sandbox');
  const sandbox = model.sandbox;
  const running = sandbox?.state === 'running';
  return (
    <div className="jp-SandboxSidebar-content">
      <Header model={model} />
      {sandbox && <StatusSection model={model} commands={commands} />}
      {running && <FilesSection model={model} commands={commands} />}
      {running && <GitSection model={model} />}
      {running && <PreviewsSection model={model} />}
      {sandbox && <NetworkSection model={model} />}
    </div>
  );
}
