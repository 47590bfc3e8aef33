/**
 * Small forms shown in JupyterLab dialogs (credentials, clone, a single value). Credentials typed
 * here are used for one request and never stored.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

interface IField {
  name: string;
  label: string;
  value?: string;
  type?: 'text' | 'password';
  placeholder?: string;
}

class FormBody extends Widget implements Dialog.IBodyWidget<Record<string, string>> {
  private inputs: Record<string, HTMLInputElement> = {};

  constructor(fields: IField[], note?: string) {
    super();
    this.addClass('jp-SandboxForm');
    if (note) {
      const p = document.createElement('p');
      p.textContent = note;
      this.node.appendChild(p);
    }
    for (const field of fields) {
      const label = document.createElement('label');
      label.textContent = field.label;
      const input = document.createElement('input');
      input.className = 'jp-mod-styled';
      input.type = field.type || 'text';
      input.name = field.name;
      input.value = field.value || '';
      input.placeholder = field.placeholder || '';
      input.autocomplete = field.type === 'password' ? 'off' : 'on';
      input.setAttribute('aria-label', field.label);
      label.appendChild(input);
      this.node.appendChild(label);
      this.inputs[field.name] = input;
    }
  }

  getValue(): Record<string, string> {
    const values: Record<string, string> = {};
    for (const [name, input] of Object.entries(this.inputs)) {
      values[name] = input.value;
    }
    return values;
  }
}

/** Ask for some values; null when the dialog was cancelled. */
export async function askForm(
  title: string,
  fields: IField[],
  accept: string,
  note?: string
): Promise<Record<string, string> | null> {
  const result = await showDialog({
    title,
    body: new FormBody(fields, note),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: accept })],
    focusNodeSelector: 'input'
  });
  return result.button.accept ? (result.value as Record<string, string>) : null;
}

export async function confirm(title: string, message: string, accept: string, danger = true): Promise<boolean> {
  const result = await showDialog({
    title,
    body: message,
    buttons: [Dialog.cancelButton(), danger ? Dialog.warnButton({ label: accept }) : Dialog.okButton({ label: accept })]
  });
  return result.button.accept;
}

export const CREDENTIAL_NOTE =
  'Leave both empty for a public repository. They are used for this request only and not kept.';

export function credentialFields(): IField[] {
  return [
    { name: 'username', label: 'Username', placeholder: 'optional' },
    { name: 'password', label: 'Token or password', type: 'password', placeholder: 'optional' }
  ];
}
