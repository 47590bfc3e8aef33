/**
 * The renderer of `application/vnd.jupyter-sandbox.isolated+json`: the original of an output from the
 * sandbox, which the kernel sends beside its sanitised fallback. HTML and JavaScript run in an
 * isolated frame (frame.ts); Markdown is rendered by JupyterLab's own Markdown renderer as untrusted
 * output, so its sanitiser removes the raw HTML's scripts while math, highlighting and task lists stay.
 */
import { MimeModel, RenderedMarkdown } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { PanelLayout, Widget } from '@lumino/widgets';

import {
  FRAME_ALLOW,
  FRAME_SANDBOX,
  IIsolatedBundle,
  MIN_FRAME_HEIGHT,
  THEME_MESSAGE,
  buildSrcdoc,
  parseIsolated,
  readThemeVariables,
  requestedHeight
} from './frame';
import { withoutHostUrls } from './urls';

export const ISOLATED_MIME = 'application/vnd.jupyter-sandbox.isolated+json';

/**
 * Relative URLs in the sandbox's Markdown name the sandbox's files, not the notebook's folder on
 * the host: they are never resolved to a host URL (the attribute is emptied).
 */
const NO_HOST_URLS: IRenderMime.IResolver = {
  isLocal: () => true,
  resolveUrl: () => Promise.resolve(''),
  getDownloadUrl: () => Promise.resolve('data:,') // an empty document: nothing is fetched
};

function isLightTheme(): boolean {
  return document.body.getAttribute('data-jp-theme-light') !== 'false';
}

/** Every live frame, for the one message listener and the theme observer of the page. */
const frames = new Set<IsolatedFrame>();
let watching = false;

function watchPage(): void {
  if (watching) {
    return;
  }
  watching = true;
  window.addEventListener('message', event => {
    for (const frame of frames) {
      if (frame.receive(event)) {
        return;
      }
    }
  });
  new MutationObserver(() => {
    for (const frame of frames) {
      frame.postTheme();
    }
  }).observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-light', 'data-jp-theme-name'] });
}

/** One output's frame. */
class IsolatedFrame extends Widget {
  constructor(content: IIsolatedBundle) {
    super({ node: document.createElement('div') });
    this.addClass('jp-SandboxIsolatedOutput');
    this.iframe = document.createElement('iframe');
    this.iframe.className = 'jp-SandboxIsolatedOutput-frame';
    this.iframe.setAttribute('sandbox', FRAME_SANDBOX);
    this.iframe.setAttribute('allow', FRAME_ALLOW);
    this.iframe.setAttribute('referrerpolicy', 'no-referrer');
    this.iframe.setAttribute('title', 'Sandbox output (isolated)');
    // Styled here rather than in the sidebar's stylesheet: a frame is as wide as the output area.
    this.iframe.style.cssText = `display: block; width: 100%; border: 0; height: ${MIN_FRAME_HEIGHT}px;`;
    this.iframe.addEventListener('load', () => this.loaded());
    this.iframe.srcdoc = buildSrcdoc(content, readThemeVariables(document.body), isLightTheme());
    this.node.appendChild(this.iframe);
  }

  /** Handles a message if it is this frame's; true when it was (whatever it asked for). */
  receive(event: MessageEvent): boolean {
    if (this.iframe.contentWindow === null || event.source !== this.iframe.contentWindow) {
      return false;
    }
    const height = requestedHeight(event, this.iframe.contentWindow);
    if (height !== null) {
      this.iframe.style.height = `${height}px`;
    }
    return true;
  }

  postTheme(): void {
    this.iframe.contentWindow?.postMessage(
      { type: THEME_MESSAGE, variables: readThemeVariables(document.body), light: isLightTheme() },
      '*' // the frame's origin is opaque: it has no name to address it by
    );
  }

  protected onAfterAttach(): void {
    frames.add(this);
    watchPage();
    // Moving a frame in the page reloads its document; that load is ours.
    this.expectedLoads += 1;
  }

  protected onBeforeDetach(): void {
    frames.delete(this);
  }

  dispose(): void {
    frames.delete(this);
    super.dispose();
  }

  private loaded(): void {
    if (this.expectedLoads > 0) {
      this.expectedLoads -= 1;
      this.postTheme();
      return;
    }
    // Any other load is the frame navigating itself away from the document built here: it is removed.
    frames.delete(this);
    this.iframe.remove();
    const notice = document.createElement('pre');
    notice.className = 'jp-SandboxIsolatedOutput-notice';
    notice.textContent = '[output removed: it navigated away from its frame]';
    this.node.appendChild(notice);
  }

  private readonly iframe: HTMLIFrameElement;
  private expectedLoads = 0;
}

/** The renderer JupyterLab creates per output of the isolated type. */
export class IsolatedRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(private readonly options: IRenderMime.IRendererOptions) {
    super();
    this.addClass('jp-SandboxIsolated');
    this.layout = new PanelLayout();
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const layout = this.layout as PanelLayout;
    for (const child of [...layout.widgets]) {
      child.dispose();
    }
    const bundle = parseIsolated(model.data[ISOLATED_MIME]);
    if (bundle === null) {
      const notice = new Widget({ node: document.createElement('pre') });
      notice.node.textContent = '[output removed: malformed]';
      layout.addWidget(notice);
      return;
    }
    if (bundle.html || bundle.javascript) {
      layout.addWidget(new IsolatedFrame(bundle));
      return;
    }
    const base = this.options.sanitizer;
    const sanitizer: IRenderMime.ISanitizer = {
      sanitize: (dirty, options) => withoutHostUrls(base.sanitize(dirty, options)),
      getAutolink: base.getAutolink ? () => base.getAutolink?.() ?? false : undefined,
      allowNamedProperties: base.allowNamedProperties
    };
    const markdown = new RenderedMarkdown({
      ...this.options,
      mimeType: 'text/markdown',
      sanitizer,
      resolver: NO_HOST_URLS
    });
    layout.addWidget(markdown);
    // Untrusted, whatever the output's own flag says: JupyterLab's sanitiser then cleans the HTML.
    await markdown.renderModel(
      new MimeModel({ data: { 'text/markdown': bundle.markdown ?? '' }, metadata: {}, trusted: false })
    );
  }
}

/** Registered ahead of every built-in renderer: an output that has the original renders it isolated. */
export const isolatedRendererFactory: IRenderMime.IRendererFactory = {
  safe: true, // it runs nothing on the Jupyter origin, so it also renders untrusted (saved) outputs
  mimeTypes: [ISOLATED_MIME],
  defaultRank: 0,
  createRenderer: options => new IsolatedRenderer(options)
};
