"""The agent's HTTP API. Every request must carry the sandbox's token."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from tornado import web
from tornado.locks import Condition

from .kernel_runner import KernelRunner

MAX_EVENTS_KEPT = 100
MAX_WAIT_SECONDS = 60.0


class EventLog:
    """Numbered events (kernel deaths) that the host can long-poll for."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.changed = Condition()

    def add(self, event: dict[str, Any]) -> None:
        self.seq += 1
        self.events.append({**event, "seq": self.seq, "time": time.time()})
        del self.events[:-MAX_EVENTS_KEPT]
        self.changed.notify_all()

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [event for event in self.events if event["seq"] > seq]


class AgentHandler(web.RequestHandler):
    def initialize(self, token: str, runner: KernelRunner, events: EventLog, started: float) -> None:
        self.token = token
        self.runner = runner
        self.event_log = events
        self.started = started

    def prepare(self) -> None:
        scheme, _, given = (self.request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPError(401, "a valid agent token is required")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError) and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))


class HealthHandler(AgentHandler):
    def get(self) -> None:
        self.write_json({
            "status": "ok",
            "uptime": time.time() - self.started,
            "kernel": self.runner.status(),
            "last_event": self.event_log.seq,
        })


class KernelActionHandler(AgentHandler):
    async def post(self, action: str) -> None:
        loop = asyncio.get_running_loop()
        if action == "start":
            generation = await loop.run_in_executor(None, self.runner.start)
        elif action == "restart":
            generation = await loop.run_in_executor(None, self.runner.restart)
        elif action == "interrupt":
            if not self.runner.interrupt():
                raise web.HTTPError(409, "the kernel is not running")
            generation = self.runner.generation
        else:
            raise web.HTTPError(404, f"unknown kernel action {action!r}")
        self.write_json({"generation": generation, "kernel": self.runner.status()})


class EventsHandler(AgentHandler):
    async def get(self) -> None:
        try:
            after = int(self.get_query_argument("after", "0"))
            wait = min(float(self.get_query_argument("timeout", "0")), MAX_WAIT_SECONDS)
        except ValueError:
            raise web.HTTPError(400, "after must be an integer and timeout a number of seconds") from None
        if wait > 0 and not self.event_log.after(after):
            await self.event_log.changed.wait(timeout=time.time() + wait)
        self.write_json({"seq": self.event_log.seq, "events": self.event_log.after(after)})


def make_app(token: str, runner: KernelRunner, events: EventLog) -> web.Application:
    args = {"token": token, "runner": runner, "events": events, "started": time.time()}
    return web.Application([
        (r"/health", HealthHandler, args),
        (r"/kernel/(\w+)", KernelActionHandler, args),
        (r"/events", EventsHandler, args),
    ])
