/**
 * The isolated frame an output from the sandbox runs in: its attributes, its document and the
 * messages it may send. Pure functions, so that what decides the boundary is tested on its own.
 *
 * The boundary: the frame's origin is opaque (`sandbox` without `allow-same-origin`), so its scripts
 * run but cannot read or act on the Jupyter origin (its DOM, cookies, storage, XSRF token); without
 * `allow-top-navigation`, `allow-popups`, `allow-modals`, `allow-forms` or `allow-downloads` it cannot
 * move the user's window, open another, block it with a dialog, post a form or drop a file on the
 * host. Its document, written here, starts with a Content-Security-Policy that allows no network at
 * all (inline script and style, data:/blob: images, media and fonts), so a frame cannot fetch Jupyter's
 * API or phone home with what the sandbox gave it (its egress policy holds in the browser too).
 */

/** The only flags the frame gets: scripts, in an opaque origin. */
export const FRAME_SANDBOX = 'allow-scripts';

/** Powerful features the frame never gets, whatever the page around it is allowed. */
export const FRAME_ALLOW = [
  'camera',
  'microphone',
  'geolocation',
  'display-capture',
  'clipboard-read',
  'clipboard-write',
  'payment',
  'usb',
  'serial',
  'hid',
  'fullscreen',
  'screen-wake-lock',
  'publickey-credentials-get'
]
  .map(feature => `${feature} 'none'`)
  .join('; ');

/** No network: nothing leaves the frame, whatever its scripts build. */
export const FRAME_CSP = [
  "default-src 'none'",
  "script-src 'unsafe-inline' 'unsafe-eval' blob:",
  "style-src 'unsafe-inline' blob:",
  'img-src data: blob:',
  'media-src data: blob:',
  'font-src data:',
  'worker-src blob:',
  "connect-src 'none'",
  "frame-src 'none'",
  "child-src 'none'",
  "object-src 'none'",
  "form-action 'none'",
  "base-uri 'none'",
  "manifest-src 'none'"
].join('; ');

/** Tallest a frame may make itself (pixels); beyond it the frame scrolls. */
export const MAX_FRAME_HEIGHT = 4000;
export const MIN_FRAME_HEIGHT = 16;

export const SIZE_MESSAGE = 'jupyter-sandbox:size';
export const THEME_MESSAGE = 'jupyter-sandbox:theme';

/** What the frame's content is: the original bundle's HTML and JavaScript. */
export interface IFrameContent {
  html?: string;
  javascript?: string;
}

/** CSS custom properties of the theme, by name (`--jp-...`). */
export type ThemeVariables = Record<string, string>;

const VARIABLE_NAME = /^--jp-[\w-]{1,100}$/;
// A value goes into a <style> block: nothing that could end the rule or the block.
const UNSAFE_VALUE = /[<>{};\\]/;

/** The theme's variables that may be written into a frame's style, others left out. */
export function cleanThemeVariables(variables: ThemeVariables): ThemeVariables {
  const clean: ThemeVariables = {};
  for (const [name, value] of Object.entries(variables)) {
    if (VARIABLE_NAME.test(name) && typeof value === 'string' && value.length < 500 && !UNSAFE_VALUE.test(value)) {
      clean[name] = value.trim();
    }
  }
  return clean;
}

/** Every `--jp-*` custom property the page's computed style has (JupyterLab's theme). */
export function readThemeVariables(element: Element): ThemeVariables {
  const style = getComputedStyle(element);
  const variables: ThemeVariables = {};
  for (let i = 0; i < style.length; i++) {
    const name = style[i];
    if (name.startsWith('--jp-')) {
      variables[name] = style.getPropertyValue(name);
    }
  }
  return cleanThemeVariables(variables);
}

// Runs first in the frame, before anything of the output: reports the content's height to the
// parent, follows the theme the parent posts, and keeps a click on a link from navigating the frame
// (an output's own script can still do so; the parent then removes the frame). It is the frame's own
// code: an output may replace any of it, and the parent trusts nothing it says but a number.
const BOOTSTRAP = `(function () {
  var last = -1, queued = false;
  function report() {
    queued = false;
    // The box of <html>, or what overflows it when an output pins it to the frame (height: 100%).
    var root = document.documentElement;
    var height = Math.ceil(Math.max(root.getBoundingClientRect().height, root.scrollHeight));
    if (height !== last) {
      last = height;
      parent.postMessage({ type: '${SIZE_MESSAGE}', height: height }, '*');
    }
  }
  function schedule() {
    if (!queued) { queued = true; requestAnimationFrame(report); }
  }
  new ResizeObserver(schedule).observe(document.documentElement);
  new MutationObserver(schedule).observe(document, { childList: true, subtree: true, attributes: true });
  addEventListener('load', schedule);
  // Content drawn in a shadow root or a canvas changes no box the observers see.
  setInterval(schedule, 500);
  addEventListener('message', function (event) {
    var data = event.data;
    if (event.source !== parent || !data || data.type !== '${THEME_MESSAGE}') { return; }
    var root = document.documentElement;
    for (var name in data.variables) { root.style.setProperty(name, String(data.variables[name])); }
    root.setAttribute('data-jp-theme-light', String(!!data.light));
  });
  document.addEventListener('click', function (event) {
    var link = event.target && event.target.closest ? event.target.closest('a[href]') : null;
    if (link && link.getAttribute('href').charAt(0) !== '#') { event.preventDefault(); }
  }, true);
})();`;

// How JupyterLab shows HTML output, written again for the frame in the theme's variables (the page's
// stylesheets do not reach into it): text, tables as pandas and Styler produce them, code.
const BASE_STYLE = `
html { height: auto; overflow: auto; }
body {
  margin: 0; padding: 0 2px;
  font-family: var(--jp-content-font-family, system-ui, sans-serif);
  font-size: var(--jp-content-font-size1, 14px);
  line-height: var(--jp-content-line-height, 1.6);
  color: var(--jp-content-font-color1, rgba(0, 0, 0, 0.87));
  background: transparent;
  overflow-wrap: break-word;
}
a { color: var(--jp-content-link-color, #1976d2); }
pre, code { font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 13px); }
table {
  border-collapse: collapse; border-spacing: 0; border: none;
  font-size: var(--jp-ui-font-size1, 12px); table-layout: fixed; margin-left: 0; margin-right: 0;
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
}
thead { border-bottom: var(--jp-border-width, 1px) solid var(--jp-border-color1, #bdbdbd); vertical-align: bottom; }
td, th, tr { text-align: right; vertical-align: middle; padding: 0.5em; line-height: normal; white-space: normal; max-width: none; border: none; }
th { font-weight: bold; }
tbody tr:nth-child(odd) { background: var(--jp-layout-color0, #fff); }
tbody tr:nth-child(even) { background: var(--jp-rendermime-table-row-background, #f5f5f5); }
tbody tr:hover { background: var(--jp-rendermime-table-row-hover-background, #e1f5fe); }
img, svg, canvas, video { max-width: 100%; }
`;

function escapeScript(source: string): string {
  // Only so that the text stays one script element; the frame is the output's own either way.
  return source.replace(/<\/(script)/gi, '<\\/$1');
}

/** The whole document of a frame: the CSP first, then the frame's own code, then the output. */
export function buildSrcdoc(content: IFrameContent, theme: ThemeVariables, light: boolean): string {
  const variables = Object.entries(cleanThemeVariables(theme))
    .map(([name, value]) => `${name}: ${value};`)
    .join(' ');
  const parts = [
    '<!DOCTYPE html><html data-jp-theme-light="',
    String(light),
    '"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}">`,
    '<meta name="referrer" content="no-referrer">',
    `<style>:root { ${variables} color-scheme: ${light ? 'light' : 'dark'}; }${BASE_STYLE}</style>`,
    `<script>${BOOTSTRAP}</script>`,
    '</head><body><div id="output">',
    content.html ?? '',
    '</div>'
  ];
  if (content.javascript) {
    // As JupyterLab runs application/javascript: `element` is the output's node.
    parts.push(
      '<script>var element = document.getElementById("output");</script>',
      `<script>${escapeScript(content.javascript)}</script>`
    );
  }
  parts.push('</body></html>');
  return parts.join('');
}

/**
 * The height a size message asks for, clamped, or null when the message is not one: it must come
 * from this frame's own window (not another frame's, not the page's), be an object of the protocol's
 * type, and carry a finite number.
 */
export function requestedHeight(event: { source: unknown; data: unknown }, frameWindow: unknown): number | null {
  if (frameWindow == null || event.source !== frameWindow) {
    return null;
  }
  const data = event.data;
  if (typeof data !== 'object' || data === null || (data as { type?: unknown }).type !== SIZE_MESSAGE) {
    return null;
  }
  const height = (data as { height?: unknown }).height;
  if (typeof height !== 'number' || !Number.isFinite(height)) {
    return null;
  }
  return Math.min(MAX_FRAME_HEIGHT, Math.max(MIN_FRAME_HEIGHT, Math.ceil(height)));
}

/** What the kernel sends under the isolated type, or null when it is not that shape. */
export interface IIsolatedBundle {
  html?: string;
  javascript?: string;
  markdown?: string;
}

export function parseIsolated(value: unknown): IIsolatedBundle | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return null;
  }
  const { version, data } = value as { version?: unknown; data?: unknown };
  if (version !== 1 || typeof data !== 'object' || data === null || Array.isArray(data)) {
    return null;
  }
  const text = (mime: string): string | undefined => {
    const item = (data as Record<string, unknown>)[mime];
    return typeof item === 'string' && item.length > 0 ? item : undefined;
  };
  const bundle: IIsolatedBundle = {
    html: text('text/html'),
    javascript: text('application/javascript'),
    markdown: text('text/markdown')
  };
  return bundle.html || bundle.javascript || bundle.markdown ? bundle : null;
}
