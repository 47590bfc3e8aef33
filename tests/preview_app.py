"""The web app the preview tests run inside a sandbox: it shows what reached it.

Usage: python3 preview_app.py PORT [ADDRESS]   (ADDRESS defaults to 127.0.0.1)
"""

import hashlib
import json
import sys

from tornado import ioloop, web, websocket


class Echo(web.RequestHandler):
    def prepare(self) -> None:
        self.set_header("Set-Cookie", "app_session=kept; Path=/")

    def get(self) -> None:
        self.write(
            {
                "method": self.request.method,
                "path": self.request.path,
                "query": self.request.query,
                "headers": dict(self.request.headers.get_all()),
                "cookies": {k: v.value for k, v in self.request.cookies.items()},
            }
        )

    post = put = delete = patch = get


class Page(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html")
        self.write("""<!doctype html><html><body><h1 id="title">hello from the sandbox</h1><script>
window.results = {};
async function probe(name, url) {
  try { const r = await fetch(url, {credentials: 'include'}); window.results[name] = r.status + ' ' + (await r.text()).slice(0, 200); }
  catch (e) { window.results[name] = 'blocked: ' + e; }
}
window.probes = Promise.all([
  probe('own_api_contents', '/api/contents'),
  probe('own_sandbox_api', '/sandbox/api/sandboxes'),
  probe('jupyter_api_contents', decodeURIComponent(window.location.search.slice(1).split('jupyter=')[1]) + '/api/contents'),
]);
</script></body></html>""")


class Big(web.RequestHandler):
    async def get(self) -> None:
        megabytes = int(self.get_query_argument("mb", "1"))
        block = bytes(range(256)) * 4096
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(megabytes * len(block)))
        for _ in range(megabytes):
            self.write(block)
            await self.flush()


class Upload(web.RequestHandler):
    def post(self) -> None:
        self.write({"size": len(self.request.body), "sha256": hashlib.sha256(self.request.body).hexdigest()})


class Events(web.RequestHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        for number in range(3):
            self.write(f"data: tick {number}\n\n")
            await self.flush()
            await __import__("asyncio").sleep(0.2)


class Redirect(web.RequestHandler):
    def get(self) -> None:
        self.redirect("/echo?from=redirect")


class Answer(web.RequestHandler):
    """A hostile app: answers with the status, headers (`h=Name: value`, repeatable) and body it is told."""

    def get(self) -> None:
        self.set_status(int(self.get_query_argument("status", "200")))
        for header in self.get_query_arguments("h"):
            name, _, value = header.partition(":")
            self.add_header(name.strip(), value.strip())
        self.write(self.get_query_argument("body", ""))


ATTACK = """<!doctype html><html><body><h1 id="title">attack</h1><script>
window.results = {};
const note = (name, value) => { window.results[name] = String(value); };
async function attempt(name, action) {
  try { note(name, await action()); } catch (e) { note(name, 'refused: ' + e.name); }
}
window.done = Promise.all([
  attempt('cookie_write', () => { document.cookie = '_xsrf=from-script; path=/'; return document.cookie; }),
  attempt('cookie_read', () => document.cookie),
  attempt('storage', () => { localStorage.setItem('x', '1'); return 'written'; }),
  attempt('contents', async () => { const r = await fetch('/api/contents', {credentials: 'include'});
                                    return r.status + ' ' + (await r.text()).slice(0, 100); }),
  attempt('terminal', async () => { const r = await fetch('/api/terminals', {method: 'POST', credentials: 'include',
                                    mode: 'no-cors'}); return r.type + ' ' + r.status; }),
  attempt('own_websocket', () => new Promise(done => {
    const ws = new WebSocket(new URL('ws-any', location.href.replace(/^http/, 'ws')));
    ws.onopen = () => ws.send('mine'); ws.onmessage = e => done('open: ' + e.data); ws.onerror = () => done('refused');
  })),
  attempt('own_image', () => new Promise(done => {
    const img = new Image(); img.onload = () => done('loaded'); img.onerror = () => done('refused');
    img.src = 'answer?h=Content-Type%3A%20image%2Fsvg%2Bxml&body=' + encodeURIComponent("<svg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/>");
  })),
  attempt('service_worker', async () => { const r = await navigator.serviceWorker.register(SW, {scope: SCOPE});
                                          return 'registered ' + r.scope; }),
]).then(() => { window.finished = true; });
</script></body></html>"""


class Attack(web.RequestHandler):
    """A page that sends every header that could change state of the origin it is served on, and whose
    script tries the same from inside."""

    def get(self) -> None:
        login = self.get_query_argument("login", "username-x")
        for cookie in (
            "_xsrf=chosen-by-the-app; Path=/",
            f"{login}=; Path=/; Max-Age=0",
            f"{login}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "_xsrf=chosen-too; Domain=localhost; Path=/",
            "_xsrf=chosen-again; Domain=127.0.0.1; Path=/",
            "__Host-planted=1; Path=/; Secure",
            "app_wide=1; Path=/; Max-Age=3600",
            "jupyter-sandbox-preview=replaced; Path=/",
            *self.get_query_arguments("extra"),
        ):
            self.add_header("Set-Cookie", cookie)
        if self.get_query_argument("clear", "yes") == "yes":
            self.add_header("Clear-Site-Data", '"cookies", "storage", "cache"')
        self.add_header("Service-Worker-Allowed", "/")
        # A policy of its own asking for its origin back: policies only ever add restrictions.
        self.add_header("Content-Security-Policy", "sandbox allow-same-origin allow-scripts")
        self.add_header("Link", "</api/contents>; rel=preload; as=fetch")
        self.add_header("Cache-Control", "public, max-age=86400")
        self.add_header("Vary", "Cookie")
        self.add_header("Content-Type", "text/html")
        sw = self.get_query_argument("sw", "sw.js")
        scope = self.get_query_argument("scope", "/")
        self.write(ATTACK.replace("SW", json.dumps(sw)).replace("SCOPE", json.dumps(scope)))


class ServiceWorker(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/javascript")
        self.set_header("Service-Worker-Allowed", "/")
        self.write("self.addEventListener('fetch', e => e.respondWith(new Response('owned by the sandbox')));")


class Echoes(websocket.WebSocketHandler):
    def on_message(self, message) -> None:
        if message == "close-please":
            self.close(4001, "asked to close")
            return
        self.write_message(message, binary=isinstance(message, bytes))


class TrustingEchoes(Echoes):
    """A websocket that takes any Origin (as many apps do behind a proxy): the proxy must check it."""

    def check_origin(self, origin: str) -> bool:
        return True


app = web.Application(
    [
        (r"/answer", Answer),
        (r"/attack", Attack),
        (r"/sw.js", ServiceWorker),
        (r"/ws-any", TrustingEchoes),
        (r"/echo.*", Echo),
        (r"/", Page),
        (r"/big", Big),
        (r"/upload", Upload),
        (r"/events", Events),
        (r"/redirect", Redirect),
        (r"/ws", Echoes),
    ],
    websocket_ping_interval=None,
)
app.listen(int(sys.argv[1]), address=sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", max_body_size=2 * 1024**3)
print(json.dumps({"listening": int(sys.argv[1])}), flush=True)
ioloop.IOLoop.current().start()
