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
        self.write({"method": self.request.method, "path": self.request.path, "query": self.request.query,
                    "headers": dict(self.request.headers.get_all()),
                    "cookies": {k: v.value for k, v in self.request.cookies.items()}})

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


class Echoes(websocket.WebSocketHandler):
    def on_message(self, message) -> None:
        if message == "close-please":
            self.close(4001, "asked to close")
            return
        self.write_message(message, binary=isinstance(message, bytes))


app = web.Application([(r"/echo.*", Echo), (r"/", Page), (r"/big", Big), (r"/upload", Upload), (r"/events", Events),
                       (r"/redirect", Redirect), (r"/ws", Echoes)], websocket_ping_interval=None)
app.listen(int(sys.argv[1]), address=sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", max_body_size=2 * 1024**3)
print(json.dumps({"listening": int(sys.argv[1])}), flush=True)
ioloop.IOLoop.current().start()
