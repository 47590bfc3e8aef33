"""The synchronous SDK: the same objects as the asynchronous one, each call run to completion on
one event loop kept in a background thread (so a script, a notebook cell that already has a
running loop, and threads all work the same way)."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import threading
from collections.abc import Iterator
from typing import Any

from . import sandbox as aio
from .code import CodeInterpreter
from .models import Preview, SandboxInfo
from .pty import AsyncPty, DataCallback, Ptys


class _Loop:
    """One event loop in a daemon thread, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="jupyter-sandbox-sdk", daemon=True).start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def run(cls, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, cls.get()).result()


# The asynchronous classes whose objects the synchronous side hands out wrapped.
_WRAPPED = (aio._Part, aio.Session, aio.BackgroundCommand, CodeInterpreter, AsyncPty, Ptys)


def _wrap(value: Any) -> Any:
    if isinstance(value, _WRAPPED):
        return _Proxy(value)
    if isinstance(value, list) and value and isinstance(value[0], _WRAPPED):
        return [_Proxy(v) for v in value]
    return value


def _iterate(agen: Any) -> Iterator[Any]:
    while True:
        try:
            yield _Loop.run(agen.__anext__())
        except StopAsyncIteration:
            return


class _Proxy:
    """A synchronous face of an asynchronous SDK object: coroutines are awaited, async iterators
    become iterators, and SDK objects in answers are wrapped in turn."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.isasyncgenfunction(value):
            return lambda *a, **k: _iterate(value(*a, **k))
        if inspect.iscoroutinefunction(value):

            def call(*args: Any, **kwargs: Any) -> Any:
                return _wrap(_Loop.run(value(*args, **kwargs)))

            call.__doc__ = value.__doc__
            return call
        return _wrap(value)

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        closer = getattr(self._target, "__aexit__", None)
        if closer is not None:
            _Loop.run(closer(*exc))


class Sandbox:
    """One sandbox (synchronous). `Sandbox.create(...)`, `Sandbox.get(id)`, `Sandbox.list()`;
    `with Sandbox.create() as sb:` deletes it at the end. Namespaces: `sb.process`, `sb.fs`,
    `sb.git`, `sb.network`, `sb.code`; see AsyncSandbox for every argument."""

    def __init__(self, target: aio.AsyncSandbox) -> None:
        self._target = target
        self.process: Any = _Proxy(target.process)
        self.fs: Any = _Proxy(target.fs)
        self.git: Any = _Proxy(target.git)
        self.network: Any = _Proxy(target.network)
        self.code: Any = _Proxy(target.code)
        self.ptys: Any = _Proxy(target.ptys)

    @classmethod
    def create(cls, **kwargs: Any) -> Sandbox:
        """A new sandbox: image=, language=, cpu=, memory=, network=, labels=, disk=, env=, url=, token=."""
        return cls(_Loop.run(aio.AsyncSandbox.create(**kwargs)))

    @classmethod
    def get(cls, sandbox_id: str, url: str | None = None, token: str | None = None) -> Sandbox:
        return cls(_Loop.run(aio.AsyncSandbox.get(sandbox_id, url=url, token=token)))

    @classmethod
    def list(
        cls,
        url: str | None = None,
        token: str | None = None,
        kernel_id: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        """Your sandboxes (optionally those of one kernel, or those with all of `labels`)."""
        return list(_Loop.run(aio.AsyncSandbox.list(url=url, token=token, kernel_id=kernel_id, labels=labels)))

    @property
    def id(self) -> str:
        return self._target.id

    @property
    def info(self) -> SandboxInfo:
        return self._target.info

    @property
    def kernel_id(self) -> str | None:
        return self._target.kernel_id

    def __repr__(self) -> str:
        return f"<Sandbox {self.id} {self.info.state}>"

    def refresh(self) -> SandboxInfo:
        return _Loop.run(self._target.refresh())

    def stop(self) -> SandboxInfo:
        return _Loop.run(self._target.stop())

    def start(self) -> SandboxInfo:
        return _Loop.run(self._target.start())

    def delete(self) -> None:
        _Loop.run(self._target.delete())

    def close(self) -> None:
        _Loop.run(self._target.close())

    def preview(self, port: int, expires_in: int | None = None) -> Preview:
        return _Loop.run(self._target.preview(port, expires_in))

    def rotate_previews(self) -> None:
        _Loop.run(self._target.rotate_previews())

    def ports(self) -> builtins.list[int]:
        return _Loop.run(self._target.ports())

    def pty(
        self,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        id: str | None = None,
        on_data: DataCallback | None = None,
        command: str | builtins.list[str] | None = None,
    ) -> Any:
        """A new PTY, connected: send_input(text), resize(cols, rows), wait_for(text), wait(), kill(),
        close() (it keeps running), output. `sb.ptys.list()/get(id)/connect(id)` find it again."""
        return _Proxy(_Loop.run(self._target.pty(cols, rows, cwd, env, id, on_data, command)))

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        _Loop.run(self._target.__aexit__(*exc))
