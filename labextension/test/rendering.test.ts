import { describe, expect, it } from 'vitest';

import {
  FRAME_CSP,
  FRAME_SANDBOX,
  MAX_FRAME_HEIGHT,
  MIN_FRAME_HEIGHT,
  SIZE_MESSAGE,
  buildSrcdoc,
  cleanThemeVariables,
  parseIsolated,
  requestedHeight
} from '../src/rendering/frame';
import { keepsUrl } from '../src/rendering/urls';

describe('the frame', () => {
  it('gets scripts in an opaque origin and nothing else', () => {
    expect(FRAME_SANDBOX.split(/\s+/)).toEqual(['allow-scripts']);
  });

  it('allows no network in its policy', () => {
    const directives = Object.fromEntries(
      FRAME_CSP.split(';').map(d => {
        const [name, ...values] = d.trim().split(/\s+/);
        return [name, values];
      })
    );
    expect(directives['default-src']).toEqual(["'none'"]);
    expect(directives['connect-src']).toEqual(["'none'"]);
    expect(directives['frame-src']).toEqual(["'none'"]);
    expect(directives['form-action']).toEqual(["'none'"]);
    for (const [name, values] of Object.entries(directives)) {
      for (const value of values as string[]) {
        expect(value, name).not.toMatch(/^(https?:|\*|'self')/);
      }
    }
  });

  it('puts the policy before anything of the output', () => {
    const doc = buildSrcdoc({ html: '<meta http-equiv="Content-Security-Policy" content="default-src *">' }, {}, true);
    const policy = doc.indexOf('Content-Security-Policy');
    expect(policy).toBeGreaterThan(0);
    expect(doc.indexOf(FRAME_CSP)).toBeLessThan(doc.indexOf('default-src *'));
  });

  it('runs JavaScript with `element` bound, in one script element', () => {
    const doc = buildSrcdoc({ javascript: 'element.textContent = "</script><b>"' }, {}, false);
    expect(doc).toContain('var element = document.getElementById("output")');
    expect(doc).not.toContain('"</script><b>"');
    expect(doc).toContain('data-jp-theme-light="false"');
  });

  it('writes only theme variables that cannot end their rule', () => {
    expect(
      cleanThemeVariables({
        '--jp-layout-color0': ' white ',
        '--jp-evil': 'red;} body{display:none',
        '--jp-close': '</style><script>x</script>',
        color: 'red'
      })
    ).toEqual({ '--jp-layout-color0': 'white' });
  });
});

describe('the size protocol', () => {
  const frameWindow = {};
  const message = (data: unknown, source: unknown = frameWindow) => requestedHeight({ source, data }, frameWindow);

  it('takes a number from the frame itself, clamped', () => {
    expect(message({ type: SIZE_MESSAGE, height: 321.2 })).toBe(322);
    expect(message({ type: SIZE_MESSAGE, height: 1e12 })).toBe(MAX_FRAME_HEIGHT);
    expect(message({ type: SIZE_MESSAGE, height: -5 })).toBe(MIN_FRAME_HEIGHT);
  });

  it('ignores other windows, other shapes and non-numbers', () => {
    expect(message({ type: SIZE_MESSAGE, height: 100 }, {})).toBeNull();
    expect(message({ type: SIZE_MESSAGE, height: 100 }, null)).toBeNull();
    expect(requestedHeight({ source: null, data: { type: SIZE_MESSAGE, height: 1 } }, null)).toBeNull();
    for (const bad of [
      { type: SIZE_MESSAGE, height: '100' },
      { type: SIZE_MESSAGE, height: NaN },
      { type: SIZE_MESSAGE, height: Infinity },
      { type: 'other', height: 100 },
      '{"type":"jupyter-sandbox:size","height":100}',
      null
    ]) {
      expect(message(bad)).toBeNull();
    }
  });
});

describe('the isolated bundle', () => {
  it('takes strings under the known types only', () => {
    expect(parseIsolated({ version: 1, data: { 'text/html': '<b>x</b>', 'application/x': 'y' } })).toEqual({
      html: '<b>x</b>',
      javascript: undefined,
      markdown: undefined
    });
    expect(parseIsolated({ version: 1, data: { 'text/markdown': '# x' } })?.markdown).toBe('# x');
  });

  it('refuses every other shape', () => {
    for (const bad of [
      null,
      'x',
      [],
      { version: 2, data: { 'text/html': 'x' } },
      { version: 1, data: [] },
      { version: 1, data: { 'text/html': 1 } },
      { version: 1, data: { 'text/html': '' } }
    ]) {
      expect(parseIsolated(bad)).toBeNull();
    }
  });
});

describe('URLs in Markdown shown on the Jupyter origin', () => {
  it('keep absolute http(s) links, data images and fragments only', () => {
    expect(keepsUrl('href', 'https://example.org/x')).toBe(true);
    expect(keepsUrl('src', 'data:image/png;base64,AAAA')).toBe(true);
    expect(keepsUrl('href', '#section')).toBe(true);
    for (const [attribute, value] of [
      ['src', '/files/secret.png'],
      ['src', 'files/secret.png'],
      ['src', '../api/terminals'],
      ['src', '//127.0.0.1:8888/api/contents'],
      ['href', 'javascript:alert(1)'],
      ['src', 'data:text/html,<script>x</script>'],
      ['src', '#x'],
      ['srcset', 'https://example.org/a.png 1x']
    ]) {
      expect(keepsUrl(attribute, value), value).toBe(false);
    }
  });
});
