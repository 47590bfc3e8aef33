"""The OpenAPI document of /sandbox/api, kept beside the handlers (a test checks they match)."""

from __future__ import annotations

from typing import Any

from .. import __version__

ERROR = {
    "description": "an error a person can read",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
        }
    },
}
OBJECT = {"type": "object", "additionalProperties": True}
STRING = {"type": "string"}


def _param(name: str, where: str = "query", required: bool = False, schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema or STRING}


SANDBOX_ID = _param("sandbox_id", "path", schema={"type": "string", "pattern": "^[0-9a-f]{12}$"})
SESSION_ID = _param("session_id", "path", schema={"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
PTY_ID = _param("pty_id", "path", schema={"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
KERNEL_ID = _param("kernel_id", "path", schema={"type": "string", "pattern": "^[0-9A-Za-z_-]{1,64}$"})
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
COMMAND_ID = _param("command_id", "path", schema={"type": "string", "pattern": "^[0-9a-f]{1,32}$"})


def _op(
    summary: str,
    params: list[dict] | None = None,
    body: dict | None = None,
    ok: str = "200",
    content: str = "application/json",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {
            ok: {
                "description": "done",
                **(
                    {
                        "content": {
                            content: {
                                "schema": OBJECT
                                if content == "application/json"
                                else {"type": "string", "format": "binary"}
                            }
                        }
                    }
                    if ok != "204"
                    else {}
                ),
            },
            "400": ERROR,
            "403": ERROR,
            "404": ERROR,
            "409": ERROR,
            "429": ERROR,
            "502": ERROR,
            "503": ERROR,
            "504": ERROR,
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


PATH_Q = _param("path")
NETWORK = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": ["internet", "none", "allow"]},
        "cidrs": {"type": "array", "items": STRING, "maxItems": 10},
        "domains": {"type": "array", "items": STRING},
    },
}
SIZE = {"oneOf": [STRING, {"type": "integer", "minimum": 1}]}
CONFIG = _obj(
    cpu={"type": "number"},
    memory=SIZE,
    pids={"type": "integer", "minimum": 1},
    disk=SIZE,
    image=STRING,
    env={"type": "object", "additionalProperties": STRING},
)
CREDENTIALS: dict[str, Any] = {"username": STRING, "password": STRING, "token": STRING}


def openapi_document() -> dict[str, Any]:
    box = "/sandbox/api/sandboxes/{sandbox_id}"
    paths: dict[str, Any] = {
        "/sandbox/api/sandboxes": {
            "get": _op(
                "list your sandboxes (label=KEY=VALUE, repeated: only those with all these labels)",
                [_param("kernel_id"), _param("label", schema={"type": "array", "items": STRING})],
            ),
            "post": _op(
                "create a sandbox",
                body=_obj(
                    image=STRING,
                    cpu={"type": "number"},
                    memory=STRING,
                    disk=STRING,
                    pids={"type": "integer"},
                    env={"type": "object", "additionalProperties": STRING},
                    labels={"type": "object", "additionalProperties": STRING},
                    network=NETWORK,
                    language={**STRING, "description": "python (default) or typescript: the sandbox's kernel"},
                ),
                ok="201",
            ),
        },
        box: {
            "get": _op(
                "a sandbox's state, spec, limits (disk: the home's bytes and inodes used and allowed) "
                "and egress policy",
                [SANDBOX_ID],
            ),
            "patch": _op(
                "change the egress policy (live), or limits, env or image (config: cpu and memory live, the rest "
                "by a fresh container on the same home; dry_run: the plan only; a kernel that is attached names "
                "itself with kernel_id to recreate its own sandbox)",
                [SANDBOX_ID],
                _obj(network=NETWORK, config=CONFIG, dry_run={"type": "boolean"}, kernel_id=STRING),
            ),
            "delete": _op("delete a sandbox with its workspace", [SANDBOX_ID], ok="204"),
        },
        f"{box}/start": {"post": _op("start a stopped sandbox", [SANDBOX_ID])},
        f"{box}/kernel": {
            "post": _op(
                "start a Jupyter kernel that runs code in this sandbox (it stays the API's)",
                [SANDBOX_ID],
                _obj(language={"type": "string", "enum": ["python"]}),
                ok="201",
            )
        },
        f"{box}/kernel/events": {
            "get": _op(
                "what happened to a kernel's sandbox since event `after` (its Python process died or was "
                "restarted; `gone`: why the container no longer runs), waiting up to `wait` seconds",
                [SANDBOX_ID, _param("after", schema={"type": "string", "pattern": "^[0-9]{1,18}$"}), _param("wait")],
            )
        },
        f"{box}/kernel/interrupt": {"post": _op("interrupt the running cell (SIGINT)", [SANDBOX_ID])},
        f"{box}/kernel/restart": {
            "post": {
                **_op(
                    "the kernel's own restart: a fresh Python process (files kept; not announced back to it), "
                    "or with hard a fresh container on the same files",
                    [SANDBOX_ID],
                ),
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _obj(hard={"type": "boolean", "default": False})}},
                },
            }
        },
        f"{box}/kernel/activity": {"post": _op("the sandbox is in use (its idle clock starts again)", [SANDBOX_ID])},
        f"{box}/kernel/channels": {
            "get": _op(
                "one of the inner kernel's channels as bytes (websocket upgrade; binary frames both ways)",
                [SANDBOX_ID, _param("channel", required=True, schema={"type": "string", "enum": list(CHANNELS)})],
            )
        },
        "/sandbox/api/kernels/{kernel_id}/sandbox": {
            "post": _op(
                "bring a proxy kernel's sandbox up: its own again, its notebook's (workspace), one from the warm "
                "pool or a new one; started and answering; reattached, its Python process starts afresh",
                [KERNEL_ID],
                _obj(workspace={"type": "string", "nullable": True, "pattern": "^[0-9a-f]{8,64}$"}),
            ),
            "delete": _op(
                "the kernel is done: its notebook's sandbox is stopped and kept, any other removed", [KERNEL_ID]
            ),
        },
        f"{box}/stop": {"post": _op("stop a sandbox (files are kept)", [SANDBOX_ID])},
        f"{box}/restart": {
            "post": {
                **_op(
                    "restart: a fresh Python process (files and container kept; an attached notebook is "
                    "told), or with hard a fresh container on the same files (409 while a kernel is attached)",
                    [SANDBOX_ID],
                ),
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _obj(hard={"type": "boolean", "default": False})}},
                },
            }
        },
        f"{box}/files": {
            "get": _op(
                "list a folder",
                [
                    SANDBOX_ID,
                    PATH_Q,
                    _param("recursive", schema={"type": "string", "enum": ["0", "1", "true", "false"]}),
                ],
            ),
            "delete": _op(
                "delete a file or folder",
                [
                    SANDBOX_ID,
                    _param("path", required=True),
                    _param("recursive", schema={"type": "string", "enum": ["0", "1", "true", "false"]}),
                ],
                ok="204",
            ),
        },
        f"{box}/files/info": {"get": _op("one entry", [SANDBOX_ID, _param("path", required=True)])},
        f"{box}/files/content": {
            "get": _op(
                "download a file, or a folder as tar/zip",
                [
                    SANDBOX_ID,
                    _param("path", required=True),
                    _param("format", schema={"type": "string", "enum": ["tar", "zip"]}),
                ],
                content="application/octet-stream",
            ),
            "put": {
                **_op("upload a file (streamed body)", [SANDBOX_ID, _param("path", required=True)]),
                "requestBody": {
                    "required": True,
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                },
            },
        },
        f"{box}/files/upload": {
            "post": {
                **_op(
                    "upload several files (multipart, streamed; the path field, the folder, comes before the files)",
                    [SANDBOX_ID],
                    ok="201",
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _obj(path=STRING, file={"type": "string", "format": "binary"})
                        }
                    },
                },
            }
        },
        f"{box}/files/folder": {
            "post": _op("create a folder", [SANDBOX_ID], _obj(["path"], path=STRING, mode=STRING), ok="201")
        },
        f"{box}/files/move": {
            "post": _op(
                "move or rename", [SANDBOX_ID], _obj(["source", "destination"], source=STRING, destination=STRING)
            )
        },
        f"{box}/files/permissions": {
            "post": _op(
                "change mode, owner, group",
                [SANDBOX_ID],
                _obj(["path"], path=STRING, mode=STRING, owner=STRING, group=STRING),
            )
        },
        f"{box}/files/search": {
            "get": _op("names matching a glob", [SANDBOX_ID, PATH_Q, _param("pattern", required=True)])
        },
        f"{box}/files/find": {
            "get": _op("lines matching a regular expression", [SANDBOX_ID, PATH_Q, _param("pattern", required=True)])
        },
        f"{box}/files/replace": {
            "post": _op(
                "replace text in files",
                [SANDBOX_ID],
                _obj(
                    ["files", "pattern", "new_value"],
                    files={"type": "array", "items": STRING},
                    pattern=STRING,
                    new_value=STRING,
                ),
            )
        },
        f"{box}/process/exec": {
            "post": _op(
                "run a command; stream: its output as it comes (newline-delimited JSON), killed when the "
                "connection goes",
                [SANDBOX_ID],
                _obj(
                    ["command"],
                    command=STRING,
                    cwd=STRING,
                    timeout={"type": "number"},
                    stream={"type": "boolean"},
                    env={"type": "object", "additionalProperties": STRING},
                ),
            )
        },
        f"{box}/sessions": {
            "get": _op("background sessions", [SANDBOX_ID]),
            "post": _op(
                "create a session",
                [SANDBOX_ID],
                _obj(id=STRING, cwd=STRING, env={"type": "object", "additionalProperties": STRING}),
                ok="201",
            ),
        },
        f"{box}/sessions/{{session_id}}": {
            "get": _op("a session and its commands", [SANDBOX_ID, SESSION_ID]),
            "delete": _op("delete a session, killing its commands", [SANDBOX_ID, SESSION_ID], ok="204"),
        },
        f"{box}/sessions/{{session_id}}/commands": {
            "post": _op(
                "run a command in a session",
                [SANDBOX_ID, SESSION_ID],
                _obj(["command"], command=STRING, run_async={"type": "boolean"}),
            )
        },
        f"{box}/sessions/{{session_id}}/commands/{{command_id}}/logs": {
            "get": _op(
                "a command's output; follow=1 streams it",
                [
                    SANDBOX_ID,
                    SESSION_ID,
                    COMMAND_ID,
                    _param("follow", schema={"type": "string", "enum": ["0", "1", "true", "false"]}),
                ],
            )
        },
        f"{box}/sessions/{{session_id}}/commands/{{command_id}}/input": {
            "post": _op("send input to a command", [SANDBOX_ID, SESSION_ID, COMMAND_ID], _obj(["data"], data=STRING))
        },
        f"{box}/sessions/{{session_id}}/commands/{{command_id}}/kill": {
            "post": _op("kill a command", [SANDBOX_ID, SESSION_ID, COMMAND_ID])
        },
        f"{box}/pty": {"get": _op("a terminal (websocket upgrade)", [SANDBOX_ID, _param("cols"), _param("rows")])},
        f"{box}/ptys": {
            "get": _op("the sandbox's PTYs, running and recently exited", [SANDBOX_ID]),
            "post": _op(
                "create a PTY: a named terminal that outlives its websocket",
                [SANDBOX_ID],
                _obj(
                    ["cols", "rows"],
                    id=STRING,
                    cols={"type": "integer", "minimum": 1, "maximum": 1000},
                    rows={"type": "integer", "minimum": 1, "maximum": 1000},
                    cwd=STRING,
                    env={"type": "object", "additionalProperties": STRING},
                    command={"oneOf": [STRING, {"type": "array", "items": STRING}]},
                ),
                ok="201",
            ),
        },
        f"{box}/ptys/{{pty_id}}": {
            "get": _op("a PTY: size, cwd, status and exit code", [SANDBOX_ID, PTY_ID]),
            "delete": _op(
                "kill a PTY's process and its session (the PTY is kept a while, exited)", [SANDBOX_ID, PTY_ID]
            ),
        },
        f"{box}/ptys/{{pty_id}}/resize": {
            "post": _op(
                "resize a PTY",
                [SANDBOX_ID, PTY_ID],
                _obj(
                    ["cols", "rows"],
                    cols={"type": "integer", "minimum": 1, "maximum": 1000},
                    rows={"type": "integer", "minimum": 1, "maximum": 1000},
                ),
            )
        },
        f"{box}/ptys/{{pty_id}}/input": {
            "post": _op("type into a running PTY", [SANDBOX_ID, PTY_ID], _obj(["data"], data=STRING))
        },
        f"{box}/ptys/{{pty_id}}/output": {
            "get": _op(
                "a PTY's recent output and what follows (newline-delimited JSON), until it exits or prints `until`",
                [SANDBOX_ID, PTY_ID, _param("until"), _param("timeout")],
            )
        },
        f"{box}/ptys/{{pty_id}}/connect": {
            "get": _op("a PTY's recent output, then live output and input (websocket upgrade)", [SANDBOX_ID, PTY_ID])
        },
        f"{box}/git/clone": {
            "post": _op(
                "clone",
                [SANDBOX_ID],
                _obj(["url"], url=STRING, path=STRING, branch=STRING, commit=STRING, **CREDENTIALS),
            )
        },
        f"{box}/git/status": {"get": _op("branch, ahead/behind and file states", [SANDBOX_ID, PATH_Q])},
        f"{box}/git/branches": {
            "get": _op("branches", [SANDBOX_ID, PATH_Q]),
            "post": _op("create a branch", [SANDBOX_ID], _obj(["name"], path=STRING, name=STRING)),
            "delete": _op("delete a branch", [SANDBOX_ID, PATH_Q, _param("name", required=True)]),
        },
        f"{box}/git/checkout": {
            "post": _op("check out a branch", [SANDBOX_ID], _obj(["name"], path=STRING, name=STRING))
        },
        f"{box}/git/add": {
            "post": _op(
                "stage files", [SANDBOX_ID], _obj(["files"], path=STRING, files={"type": "array", "items": STRING})
            )
        },
        f"{box}/git/commit": {
            "post": _op(
                "commit",
                [SANDBOX_ID],
                _obj(["message", "author", "email"], path=STRING, message=STRING, author=STRING, email=STRING),
            )
        },
        f"{box}/git/push": {"post": _op("push", [SANDBOX_ID], _obj(path=STRING, url=STRING, **CREDENTIALS))},
        f"{box}/git/pull": {"post": _op("pull", [SANDBOX_ID], _obj(path=STRING, url=STRING, **CREDENTIALS))},
        f"{box}/previews": {
            "post": _op(
                "a preview link and token for a port",
                [SANDBOX_ID],
                _obj(
                    ["port"],
                    port={"type": "integer", "minimum": 1, "maximum": 65535},
                    expires_in={"type": "integer", "minimum": 1, "maximum": 86400},
                ),
                ok="201",
            ),
            "delete": _op("rotate the preview secret: every earlier token stops working", [SANDBOX_ID], ok="204"),
        },
        f"{box}/ports": {"get": _op("TCP ports listening inside the sandbox", [SANDBOX_ID])},
        f"{box}/ssh": {
            "post": _op(
                "an SSH token (the user name of `ssh -p PORT TOKEN@host`) and its command line",
                [SANDBOX_ID],
                _obj(expires_in={"oneOf": [{"type": "number"}, STRING]}),
                ok="201",
            ),
            "delete": _op("revoke the sandbox's SSH tokens (their sessions end)", [SANDBOX_ID], ok="204"),
        },
        f"{box}/network": {"get": _op("the egress policy (change it with PATCH on the sandbox)", [SANDBOX_ID])},
        f"{box}/network/log": {
            "get": _op(
                "the egress gateway's newest connection attempts (time, host, port, allowed, bytes, reason)",
                [SANDBOX_ID, _param("limit", schema={"type": "integer", "minimum": 1, "maximum": 10000})],
            )
        },
        f"{box}/secrets": {
            "get": _op("the secrets' names, hosts and placeholders (never their values)", [SANDBOX_ID]),
            "post": _op(
                "keep a secret on the host; the gateway adds it to HTTPS requests to its hosts",
                [SANDBOX_ID],
                _obj(["name", "value", "hosts"], name=STRING, value=STRING, hosts={"type": "array", "items": STRING}),
                ok="201",
            ),
        },
        f"{box}/secrets/{{name}}": {
            "delete": _op(
                "forget a secret (the sandbox keeps its placeholder, which no longer means anything)",
                [SANDBOX_ID, _param("name", "path")],
                ok="204",
            )
        },
        f"{box}/lend": {
            "post": _op(
                "hub mode: lend this sandbox to a kernel the caller's Jupyter server starts (kernel_id), "
                "or take it back (null); POST .../kernel on the user's server does both halves",
                [SANDBOX_ID],
                _obj(["kernel_id"], kernel_id={"type": "string", "nullable": True}),
            )
        },
        "/sandbox/api/notebooks/events": {
            "post": _op(
                "hub mode: a notebook on the user's server was renamed, copied or deleted, or a session "
                "moved to another notebook; the caller's sandboxes follow it (by workspace key)",
                body=_obj(
                    ["action"],
                    action={"type": "string", "enum": ["rename", "copy", "delete", "session"]},
                    moves={
                        "type": "array",
                        "items": _obj(["from", "to"], **{"from": STRING, "to": STRING}),
                        "description": "rename: which workspace key becomes which",
                    },
                    workspace={**STRING, "description": "copy: the copy's key; session: the notebook's key"},
                    workspaces={"type": "array", "items": STRING, "description": "delete: the deleted keys"},
                    kernel_id={**STRING, "description": "session: the kernel whose session moved"},
                    live_kernels={
                        "type": "array",
                        "items": STRING,
                        "description": "delete: the kernels the server runs",
                    },
                ),
            )
        },
        "/sandbox/api/openapi.json": {"get": _op("this document")},
    }
    from .openapi_desktop import desktop_paths  # it builds on this module's helpers

    paths.update(desktop_paths(box))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "jupyter-sandbox",
            "version": __version__,
            "description": "Sandboxes, their files, processes, terminals and git, in the Jupyter server.",
        },
        "components": {"securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization"}}},
        "security": [{"token": []}],
        "paths": paths,
    }
