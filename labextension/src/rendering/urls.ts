/**
 * URLs in the sandbox's Markdown that would name something on the Jupyter origin. JupyterLab's
 * Markdown renderer puts the sanitised HTML into the page before it resolves relative URLs, so an
 * `<img src="/files/...">` or `src="/api/..."` would be requested, with the user's cookies, in that
 * moment. The HTML is therefore cleaned before it reaches the page: a URL attribute stays only when
 * it is absolute http(s), mailto:, a data: image or a #fragment (what a local kernel's output reaches
 * too, and nothing of the Jupyter server).
 */

const URL_ATTRIBUTES = ['src', 'href', 'srcset', 'poster', 'xlink:href', 'action', 'formaction', 'background', 'data'];
const KEPT_URL = /^(?:https?:\/\/|mailto:|data:image\/(?:png|jpeg|gif|webp|bmp);|#)/i;

/** Whether a URL from the sandbox may stay in HTML shown on the Jupyter origin. */
export function keepsUrl(attribute: string, value: string): boolean {
  if (attribute === 'srcset') {
    return false; // a list of URLs, never needed by Markdown
  }
  const url = value.trim();
  return KEPT_URL.test(url) && !(attribute !== 'href' && /^(?:mailto:|#)/i.test(url));
}

/** `html` without the URL attributes that could reach the Jupyter server (parsed inertly). */
export function withoutHostUrls(html: string): string {
  const template = document.createElement('template'); // its content loads nothing
  template.innerHTML = html;
  for (const element of Array.from(template.content.querySelectorAll('*'))) {
    for (const attribute of URL_ATTRIBUTES) {
      const value = element.getAttribute(attribute);
      if (value !== null && !keepsUrl(attribute, value)) {
        element.removeAttribute(attribute);
      }
    }
  }
  return template.innerHTML;
}
