/**
 * A terminal into the sandbox: xterm.js (as JupyterLab's own terminal uses) over the server's PTY
 * websocket, which the server authenticates before upgrading and relays to the sandbox's shell.
 */
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { SandboxAPI } from './api';

function themeColors(): Record<string, string> {
  const style = getComputedStyle(document.body);
  const read = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    background: read('--jp-layout-color0', '#ffffff'),
    foreground: read('--jp-ui-font-color0', '#000000'),
    cursor: read('--jp-ui-font-color0', '#000000'),
    selectionBackground: read('--jp-brand-color3', '#bbdefb')
  };
}

/**
 * The font JupyterLab's own terminal uses by default. xterm measures its cells from a real font name
 * and size: a CSS variable in fontFamily measures as the fallback font, and the rows come out
 * shorter than the glyphs (descenders clipped, long lines drawn over each other).
 */
export const TERMINAL_FONT = {
  fontFamily: 'Menlo, Consolas, "DejaVu Sans Mono", monospace',
  fontSize: 13,
  lineHeight: 1.0
};

export class SandboxTerminal extends Widget {
  readonly terminal: Terminal;
  private readonly fitAddon = new FitAddon();
  private socket: WebSocket | null = null;
  private opened = false;
  // Every change of the tab's size (open, split, sidebar, window) fits the terminal to it.
  private readonly observer = new ResizeObserver(() => this.fit());

  constructor(
    private readonly api: SandboxAPI,
    readonly sandboxId: string
  ) {
    super();
    this.id = `jupyter-sandbox-terminal-${sandboxId}-${Date.now()}`;
    this.title.label = `Sandbox ${sandboxId}`;
    this.title.caption = `A shell in sandbox ${sandboxId}`;
    this.title.closable = true;
    this.addClass('jp-SandboxTerminal');
    this.terminal = new Terminal({ ...TERMINAL_FONT, cursorBlink: true, theme: themeColors() });
    this.terminal.loadAddon(this.fitAddon);
    this.terminal.onData(data => this.send({ type: 'input', data }));
    this.terminal.onResize(({ cols, rows }) => this.send({ type: 'resize', cols, rows }));
  }

  /** Fit the rows and columns to the tab, when it has a size (a hidden tab has none). */
  fit(): void {
    if (!this.opened || this.isDisposed || this.node.clientWidth === 0 || this.node.clientHeight === 0) {
      return;
    }
    this.fitAddon.fit();
  }

  /** Follow a light/dark theme switch. */
  refreshTheme(): void {
    this.terminal.options.theme = themeColors();
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  private connect(): void {
    const socket = new WebSocket(this.api.terminalUrl(this.sandboxId, this.terminal.cols, this.terminal.rows));
    socket.binaryType = 'arraybuffer';
    socket.onmessage = event => {
      if (typeof event.data === 'string') {
        try {
          const message = JSON.parse(event.data);
          if (message.type === 'exit') {
            this.terminal.write(`\r\n[the shell exited with code ${message.code}]\r\n`);
          }
        } catch {
          this.terminal.write(event.data);
        }
        return;
      }
      this.terminal.write(new Uint8Array(event.data as ArrayBuffer));
    };
    socket.onclose = event => {
      if (!this.isDisposed) {
        this.terminal.write(`\r\n[disconnected${event.reason ? `: ${event.reason}` : ''}]\r\n`);
      }
    };
    this.socket = socket;
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (!this.opened) {
      this.opened = true;
      this.terminal.open(this.node);
      this.observer.observe(this.node);
      // The shell starts at the tab's size: fit once the layout has given the tab one (and again
      // when the font has loaded, which changes the cell size), then connect with those numbers.
      requestAnimationFrame(() => {
        this.fit();
        this.connect();
        void document.fonts?.ready.then(() => this.fit());
      });
    }
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this.fit();
  }

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    this.terminal.focus();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.observer.disconnect();
    this.send({ type: 'kill' });
    this.socket?.close();
    this.terminal.dispose();
    super.dispose();
  }
}
