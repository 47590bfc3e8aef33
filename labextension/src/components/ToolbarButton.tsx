/**
 * A button drawn as JupyterLab's own toolbar buttons are (its icon, an optional label, its minimal
 * style and spacing), so the sidebar looks like the file browser beside it.
 */
import { LabIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

export function ToolbarButton({
  icon,
  label,
  name,
  tooltip,
  onClick,
  disabled,
  danger
}: {
  icon: LabIcon;
  /** Text beside the icon ('' for an icon alone). */
  label?: string;
  /** The accessible name (the label when not given). */
  name?: string;
  tooltip: string;
  onClick: () => void;
  disabled?: boolean;
  danger?: boolean;
}): JSX.Element {
  return (
    <button
      type="button"
      className={`jp-ToolbarButtonComponent jp-Button jp-mod-minimal jp-SandboxSidebar-toolButton${danger ? ' jp-mod-danger' : ''}`}
      aria-label={name ?? label}
      title={tooltip}
      disabled={disabled}
      onClick={onClick}
    >
      <icon.react tag="span" className="jp-ToolbarButtonComponent-icon" />
      {label ? (
        <span className="jp-ToolbarButtonComponent-label">{label}</span>
      ) : (
        // An icon alone still has its words in the page (for text readers and keyboard users).
        <span className="jp-SandboxSidebar-hiddenText">{name}</span>
      )}
    </button>
  );
}
