"""Requests checked against the shapes the routes declare (openapi.py), in one place for every route.

A field the route does not know is an error that names it: a misspelt `"async": true` for
`run_async` is refused with 400 instead of being ignored (and the call then doing something else
than was asked). Query parameters, JSON bodies (nested objects included) and multipart form fields
are checked; the handlers then check values.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from .openapi import openapi_document

# Jupyter Server's own: its token and XSRF value may come in the query of any request.
SERVER_QUERY = frozenset({"token", "_xsrf"})
# The segment before each id in the routes: /sandboxes/{sandbox_id}/sessions/{session_id}/...
PATH_PARAMETERS = {
    "sandboxes": "sandbox_id",
    "sessions": "session_id",
    "commands": "command_id",
    "ptys": "pty_id",
    "secrets": "name",
    "kernels": "kernel_id",
}


class RequestError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Operation:
    """What one method of one route accepts."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.query = {p["name"] for p in spec.get("parameters", []) if p.get("in") == "query"}
        content = spec.get("requestBody", {}).get("content", {})
        self.json_schema: dict[str, Any] | None = content.get("application/json", {}).get("schema")
        form = content.get("multipart/form-data", {}).get("schema")
        self.form_fields: set[str] | None = set(form.get("properties", {})) if form else None
        self.raw_body = "application/octet-stream" in content


@functools.lru_cache(maxsize=1)
def operations() -> dict[tuple[str, str], Operation]:
    return {
        (path, method.upper()): Operation(spec)
        for path, methods in openapi_document()["paths"].items()
        for method, spec in methods.items()
    }


def route_of(request_path: str, base_url: str, path_kwargs: dict[str, str]) -> str:
    """The route's template as openapi.py names it: the request's path below the base URL, with the
    sandbox, session and command ids put back as `{sandbox_id}` and so on."""
    path = "/" + request_path[len(base_url) :] if request_path.startswith(base_url) else request_path
    parts = path.split("/")
    for index in range(1, len(parts)):
        name = PATH_PARAMETERS.get(parts[index - 1])
        if name is not None and path_kwargs.get(name) == parts[index]:
            parts[index] = "{" + name + "}"
    return "/".join(parts)


def operation_for(route: str, method: str) -> Operation | None:
    return operations().get((route, method.upper()))


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


def _cache_buster(name: str, values: list[bytes]) -> bool:
    """JupyterLab's requests add `&<milliseconds>` (a bare number, no value) to every GET, so that
    no cache answers them: not a field anybody misspelt."""
    return name.isdigit() and all(not value for value in values)


def check_query(operation: Operation, arguments: dict[str, list[bytes]]) -> None:
    names = {name for name, values in arguments.items() if not _cache_buster(name, values)}
    unknown = names - operation.query - SERVER_QUERY
    if unknown:
        raise RequestError(
            f"unknown query parameters: {_listing(unknown)}; this route takes: {_listing(operation.query)}"
        )


def unknown_fields(schema: dict[str, Any] | None, value: Any, where: str = "") -> list[str]:
    """Dotted names of the fields of `value` that `schema` does not declare (nested objects too)."""
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            name = f"{where}{key}"
            if properties is not None and key in properties:
                found += unknown_fields(properties[key], item, name + ".")
            elif isinstance(extra, dict):
                found += unknown_fields(extra, item, name + ".")
            elif extra is not True:
                found.append(name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(schema["items"], item, f"{where[:-1] if where else ''}[{index}].")
    return found


def check_json_body(operation: Operation, raw: bytes) -> None:
    """A JSON body's fields against the route's schema; a route that declares no JSON body takes
    an empty one (or `{}`) only."""
    if not raw.strip():
        return
    try:
        body = json.loads(raw)
    except ValueError:
        raise RequestError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if operation.json_schema is None:
        if body:
            raise RequestError(f"unknown fields: {_listing(set(body))}; this route takes no body")
        return
    unknown = unknown_fields(operation.json_schema, body)
    if unknown:
        allowed = set(operation.json_schema.get("properties", {}))
        raise RequestError(f"unknown fields: {', '.join(unknown)}; this route takes: {_listing(allowed)}")


def check_form_field(operation: Operation, name: str) -> None:
    if operation.form_fields is not None and name not in operation.form_fields:
        raise RequestError(f"unknown form fields: {name}; this route takes: {_listing(operation.form_fields)}")
