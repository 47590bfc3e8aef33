"""The article's walkthrough on the Python SDK: make a sandbox, write and build an app, run it in an
interactive terminal, open it through a preview link, type into the terminal, wait for it to exit,
delete the sandbox. (A small Python web app stands in for the article's Hono app.)

    JUPYTER_SANDBOX_URL=http://127.0.0.1:8888 JUPYTER_SANDBOX_TOKEN=... python examples/walkthrough_sdk.py
"""

import sys

from jupyter_sandbox.client import Sandbox

APP = """import http.server, sys
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"Hello from the sandbox!")
server = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Hello)
print("listening on", sys.argv[1], flush=True)
server.serve_forever()
"""

with Sandbox.create() as sb:  # deleted when the block ends
    sb.fs.upload("my-app/app.py", APP)
    print("build:", sb.process.exec(["python3", "-m", "py_compile", "app.py"], cwd="my-app").exit_code)
    term = sb.pty(cols=300, rows=100, cwd="my-app", on_data=lambda b: sys.stdout.write(b.decode(errors="replace")))
    term.send_input("python3 app.py 3000\n")
    term.wait_for("listening on 3000")
    preview = sb.preview(3000)
    print("\nopen in a browser:", preview.fetch_url)
    body = preview.fetch("/").text
    print(f"the app says: {body}")  # one write: the terminal's output, printed by another thread, stays apart
    term.send_input("\x03")  # Ctrl-C stops the app
    term.send_input("exit 0\n")
    print("terminal exit code:", term.wait())
