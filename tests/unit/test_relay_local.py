"""The proxy kernel's relay, driven by a real front-end client, against a real ipykernel on 127.0.0.1.

No Docker engine: the relay is given the local ipykernel's connection by a small lifecycle that stands
where lifecycle.SandboxLifecycle stands for a sandbox (relay.Lifecycle is the seam). What is asserted
is what a front end sees on shell and iopub: replies, their order, outputs and statuses.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.connect import write_connection_file

from jupyter_sandbox.kernel.magics import MagicContext
from jupyter_sandbox.kernel.relay import Relay
from jupyter_sandbox.kernel.settings import SandboxKernel

TIMEOUT = 20.0


class LocalLifecycle:
    """Readies a connection to a local ipykernel: at once, or when the test opens `gate`."""

    memory_limit = ""

    def __init__(
        self, relay: Relay, kernel: KernelManager, hold: bool = False, recorded: dict[str, Any] | None = None
    ) -> None:
        self.relay = relay
        self.recorded = recorded
        self.kernel = kernel
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.released = False
        self.interrupts = 0
        self.bring_ups = 0

    def _info(self) -> dict[str, Any]:
        return dict(self.kernel.get_connection_info())

    def bring_up(self) -> None:
        self.bring_ups += 1

        def ready() -> None:
            self.gate.wait()
            self.relay.post("ready", self._info())

        threading.Thread(target=ready, daemon=True).start()

    def connection(self) -> dict[str, Any] | None:
        return self._info() if self.gate.is_set() else None

    def recorded_kernel_info(self) -> dict[str, Any] | None:
        return self.recorded  # None: as for an image whose kernel never answered on this host

    def remember_kernel_info(self, info: dict[str, Any]) -> None:
        pass

    def magic_context(
        self, settings: SandboxKernel, cell_timeout: float, write: Callable[[str, str], None], cancel: threading.Event
    ) -> MagicContext:
        # No sandbox manager here: only `%sandbox` lines that fail before reaching one are run.
        return MagicContext(manager=None, settings=settings, sandbox=None, cell_timeout=cell_timeout, write=write)  # type: ignore[arg-type]

    def adopt(self, sandbox: Any) -> dict[str, Any]:
        return self._info()

    def stop_watching(self) -> None:
        pass

    def restart_kernel(self, message: str) -> None:
        self.kernel.restart_kernel(now=True)
        self.relay.post("kernel_restarted", message)

    def touch(self) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupts += 1
        self.kernel.interrupt_kernel()

    def release(self) -> None:
        self.released = True


class Proxy:
    """A relay running on its own thread in front of the local ipykernel, and a client of it."""

    def __init__(
        self,
        kernel: KernelManager,
        tmp: Path,
        hold: bool = False,
        recorded: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        _, written = write_connection_file(str(tmp / "front.json"), ip="127.0.0.1", key=os.urandom(16).hex().encode())
        info: dict[str, Any] = dict(written)
        holder: list[LocalLifecycle] = []

        def lifecycle(relay: Relay) -> LocalLifecycle:
            holder.append(LocalLifecycle(relay, kernel, hold=hold, recorded=recorded))
            return holder[0]

        self.relay = Relay(info, lifecycle, handshake_timeout=TIMEOUT, settings=SandboxKernel(**settings))
        self.lifecycle = holder[0]
        self.thread = threading.Thread(target=self.relay.run, daemon=True)
        self.thread.start()
        self.client = BlockingKernelClient()
        self.client.load_connection_info(written)
        self.client.start_channels()
        self.marker = tmp / "ran"  # a file a cell that must not run would make

    def close(self) -> None:
        if self.thread.is_alive():
            self.relay.post("terminate")
            self.thread.join(TIMEOUT)
        self.client.stop_channels()

    def reply(self, msg_id: str) -> dict[str, Any]:
        """The shell reply to `msg_id`; replies to other requests on the way are an error."""
        message = self.client.get_shell_msg(timeout=TIMEOUT)
        assert message["parent_header"].get("msg_id") == msg_id, message
        return message

    def iopub_until_idle(self, msg_id: str) -> list[dict[str, Any]]:
        """The iopub messages of one request, up to and including its idle status."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = self.client.get_iopub_msg(timeout=TIMEOUT)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return seen
        raise AssertionError(f"no idle for {msg_id}: {seen}")

    def run(self, code: str, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        msg_id = self.client.execute(code, **kwargs)
        reply = self.reply(msg_id)
        return reply, self.iopub_until_idle(msg_id)

    def settle(self) -> None:
        """After a cell failed with stop_on_error, ipykernel itself aborts what arrives for a moment:
        wait that out, as a front end's user would (a cell that runs again)."""
        deadline = time.monotonic() + TIMEOUT
        while self.run("pass")[0]["content"]["status"] == "aborted":
            assert time.monotonic() < deadline, "the kernel keeps aborting cells"


def stdout(messages: list[dict[str, Any]], name: str = "stdout") -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == name)


@pytest.fixture(scope="module")
def local_kernel() -> Iterator[KernelManager]:
    """One ipykernel on 127.0.0.1 for the module (each test gets a relay of its own in front of it)."""
    manager = KernelManager(kernel_name="python3", ip="127.0.0.1", transport="tcp")
    # No history database: the relay sets the shared kernel's count back for each new relay, which
    # IPython's history would report as a clash (a sandbox's kernel is fresh for each relay).
    manager.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    client.stop_channels()
    yield manager
    manager.shutdown_kernel(now=True)


@pytest.fixture
def proxy(local_kernel: KernelManager, tmp_path: Path) -> Iterator[Proxy]:
    made = Proxy(local_kernel, tmp_path)
    made.client.wait_for_ready(timeout=TIMEOUT)
    made.settle()  # the kernel is shared: the last test's error must not abort this one's cells
    yield made
    made.close()


def test_execute_round_trip_counts_and_outputs(proxy: Proxy) -> None:
    first, outputs = proxy.run("print('hello'); 6 * 7")
    assert first["content"]["status"] == "ok"
    assert stdout(outputs) == "hello\n"
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert results and results[0]["content"]["data"]["text/plain"] == "42"
    count = first["content"]["execution_count"]
    assert results[0]["content"]["execution_count"] == count
    second, outputs = proxy.run("from IPython.display import display, HTML; display(HTML('<b>bold</b>'))")
    assert second["content"]["execution_count"] == count + 1
    displays = [m for m in outputs if m["msg_type"] == "display_data"]
    assert displays and "text/html" in displays[0]["content"]["data"]
    states = [m["content"]["execution_state"] for m in outputs if m["msg_type"] == "status"]
    assert states[0] == "busy" and states[-1] == "idle"
    # A silent cell is not counted.
    proxy.run("x = 1", silent=True)
    third, _ = proxy.run("x")
    assert third["content"]["execution_count"] == count + 2


def test_kernel_info_is_the_inner_kernels(proxy: Proxy) -> None:
    msg_id = proxy.client.kernel_info()
    reply = proxy.reply(msg_id)["content"]
    assert reply["status"] == "ok"
    assert reply["language_info"]["name"] == "python"
    assert reply["implementation"] == "ipython"


def test_interrupt_request_stops_a_running_cell(proxy: Proxy) -> None:
    msg_id = proxy.client.execute("import time; print('started', flush=True); time.sleep(60)")
    deadline = time.monotonic() + TIMEOUT
    while "started" not in stdout([proxy.client.get_iopub_msg(timeout=TIMEOUT)]) and time.monotonic() < deadline:
        pass
    proxy.client.control_channel.send(proxy.client.session.msg("interrupt_request", {}))
    reply = proxy.reply(msg_id)["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    proxy.settle()
    after, _ = proxy.run("1 + 1")
    assert after["content"]["status"] == "ok"


def test_sigint_path_interrupts_through_the_lifecycle(proxy: Proxy) -> None:
    msg_id = proxy.client.execute("import time; print('started', flush=True); time.sleep(60)")
    deadline = time.monotonic() + TIMEOUT
    while "started" not in stdout([proxy.client.get_iopub_msg(timeout=TIMEOUT)]) and time.monotonic() < deadline:
        pass
    proxy.relay.post("interrupt")  # what the kernel app does on SIGINT (interrupt_mode "signal")
    reply = proxy.reply(msg_id)["content"]
    assert reply["ename"] == "KeyboardInterrupt"
    assert proxy.lifecycle.interrupts == 1


def test_cells_sent_with_a_failing_one_are_aborted_however_late_the_relay_is(proxy: Proxy) -> None:
    """A relay that falls behind (a loaded machine) must not hand the inner kernel a cell only after
    the kernel has aborted what had reached it: the cells behind a failing one wait for its verdict."""
    inner = proxy.relay.inner
    assert inner is not None
    forward = inner.forward
    executes: list[str] = []

    def falling_behind(channel: str, body: Any) -> None:
        header = json.loads(bytes(body[1]))
        if channel == "shell" and header.get("msg_type") == "execute_request":
            # The relay aborts what waits behind it; the inner kernel, whose own abort would also take a
            # cell sent just after the reply, is asked not to.
            assert json.loads(bytes(body[4]))["stop_on_error"] is False
            executes.append(header["msg_id"])
            if len(executes) > 1:
                time.sleep(0.5)  # the kernel has failed the first cell and aborted its queue by now
        forward(channel, body)

    inner.forward = falling_behind  # type: ignore[method-assign]
    failing = proxy.client.execute("raise ValueError('boom')")
    queued = [proxy.client.execute(f"open({str(proxy.marker)!r} + '{n}', 'w')") for n in range(2)]
    assert proxy.reply(failing)["content"]["status"] == "error"
    for msg_id in queued:
        assert proxy.reply(msg_id)["content"]["status"] == "aborted"
    assert executes == [failing] and not list(proxy.marker.parent.glob(proxy.marker.name + "*"))


def test_an_error_aborts_the_cells_queued_behind_it(proxy: Proxy) -> None:
    failing = proxy.client.execute("raise ValueError('boom')")
    queued = [proxy.client.execute(f"print({n})") for n in range(3)]
    reply = proxy.reply(failing)["content"]
    assert reply["status"] == "error" and reply["ename"] == "ValueError"
    for msg_id in queued:
        assert proxy.reply(msg_id)["content"]["status"] == "aborted"
    # stop_on_error=False lets the next one run.
    proxy.settle()
    failing = proxy.client.execute("raise ValueError('again')", stop_on_error=False)
    running = proxy.client.execute("print('ran')")
    assert proxy.reply(failing)["content"]["status"] == "error"
    assert proxy.reply(running)["content"]["status"] == "ok"


def test_a_failed_host_cell_aborts_the_cells_the_relay_queued(proxy: Proxy) -> None:
    """A `%sandbox` line runs on the host; the cells behind it wait in the relay, not in the kernel,
    so it is the relay that answers them "aborted"."""
    failing = proxy.client.execute("%sandbox no-such-subcommand")
    queued = [proxy.client.execute("print('must not run')") for _ in range(2)]
    reply = proxy.reply(failing)["content"]
    assert reply["status"] == "error" and "unknown subcommand" in reply["evalue"]
    for msg_id in queued:
        assert proxy.reply(msg_id)["content"]["status"] == "aborted"
        assert "must not run" not in stdout(proxy.iopub_until_idle(msg_id))


def test_a_cell_sent_once_the_error_reply_is_seen_runs(proxy: Proxy) -> None:
    """What is aborted is what was queued behind the failed cell, not a cell the front end sends
    after it has seen the error (a person running the next cell at once): over and over, it runs."""
    for _ in range(20):
        failing = proxy.client.execute("%sandbox no-such-subcommand")
        assert proxy.reply(failing)["content"]["status"] == "error"
        after = proxy.client.execute("print('runs')")
        assert proxy.reply(after)["content"]["status"] == "ok"
        proxy.iopub_until_idle(after)


def test_cells_that_arrived_but_were_not_read_yet_are_aborted_too(local_kernel: KernelManager, tmp_path: Path) -> None:
    """A `%sandbox` line that needs no sandbox fails while the sandbox is not up, and the cells queued behind it (a Run All
    on a loaded machine) reach the relay's socket after the line started but before the loop reads
    them (it handles the line's end first): they are aborted too, as ipykernel flushes its shell
    stream before it aborts, not run once the sandbox is up."""
    proxy = Proxy(local_kernel, tmp_path, hold=True)
    reached, sent = threading.Event(), threading.Event()
    on_step = proxy.relay._event_handlers["host_step"]

    def held_step(payload: Any) -> None:
        reached.set()
        sent.wait(TIMEOUT)
        time.sleep(0.2)  # the cells below reach the relay's socket while its loop is busy here
        on_step(payload)

    proxy.relay._event_handlers["host_step"] = held_step
    try:
        failing = proxy.client.execute("%sandbox no-such-subcommand --help")  # needs no sandbox: runs now
        assert reached.wait(TIMEOUT)
        queued = [proxy.client.execute("print('must not run')") for _ in range(2)]
        sent.set()
        assert proxy.reply(failing)["content"]["status"] == "error"
        proxy.lifecycle.gate.set()
        for msg_id in queued:
            assert proxy.reply(msg_id)["content"]["status"] == "aborted"
            assert "must not run" not in stdout(proxy.iopub_until_idle(msg_id))
    finally:
        proxy.close()


def test_requests_before_the_inner_kernel_is_up_are_held_then_answered_in_order(
    local_kernel: KernelManager, tmp_path: Path
) -> None:
    proxy = Proxy(local_kernel, tmp_path, hold=True)
    try:
        info = proxy.client.kernel_info()
        cells = [proxy.client.execute(f"print('cell {n}')") for n in range(3)]
        # Nothing can answer yet: the inner kernel is not connected and its kernel_info is not known.
        with pytest.raises(queue.Empty):
            proxy.client.get_shell_msg(timeout=0.5)
        proxy.lifecycle.gate.set()
        assert proxy.reply(info)["content"]["implementation"] == "ipython"
        counts = []
        for n, msg_id in enumerate(cells):
            reply = proxy.reply(msg_id)["content"]
            assert reply["status"] == "ok"
            counts.append(reply["execution_count"])
            assert f"cell {n}\n" in stdout(proxy.iopub_until_idle(msg_id))
        assert counts == list(range(counts[0], counts[0] + 3))
    finally:
        proxy.close()


def test_interrupt_while_waiting_for_the_kernel_stops_the_waiting_cell(
    local_kernel: KernelManager, tmp_path: Path
) -> None:
    proxy = Proxy(local_kernel, tmp_path, hold=True)
    try:
        waiting = proxy.client.execute("print('never')")
        behind = proxy.client.execute("print('behind')")
        # The cell the front end shows busy says so before the kernel is up.
        busy = proxy.client.get_iopub_msg(timeout=TIMEOUT)
        while busy["msg_type"] != "status":
            busy = proxy.client.get_iopub_msg(timeout=TIMEOUT)
        assert busy["parent_header"]["msg_id"] == waiting and busy["content"]["execution_state"] == "busy"
        proxy.relay.post("interrupt")
        reply = proxy.reply(waiting)["content"]
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
        assert proxy.reply(behind)["content"]["status"] == "aborted"
        proxy.lifecycle.gate.set()
        after, outputs = proxy.run("print('after')")
        assert after["content"]["status"] == "ok" and stdout(outputs) == "after\n"
    finally:
        proxy.close()


def test_a_down_sandbox_is_started_by_the_persons_request_not_by_the_front_ends_own(
    local_kernel: KernelManager, tmp_path: Path
) -> None:
    """JupyterLab asks comm_info and opens comms by itself when it reconnects; after a delete those must
    not start a new sandbox. A cell does, and what was held is answered then."""
    proxy = Proxy(local_kernel, tmp_path)
    try:
        assert proxy.run("1")[0]["content"]["status"] == "ok"
        started = proxy.lifecycle.bring_ups
        proxy.relay.post("container_died", "it was removed")
        time.sleep(0.3)
        asked = proxy.client.comm_info()
        proxy.client.session.send(
            proxy.client.shell_channel.socket,
            proxy.client.session.msg("comm_open", {"comm_id": "c1", "target_name": "none", "data": {}}),
        )
        time.sleep(1.0)
        assert proxy.lifecycle.bring_ups == started
        cell = proxy.client.execute("print('fresh')")
        # Held in order: the front end's own question is answered first, then the cell.
        assert proxy.reply(asked)["content"]["status"] == "ok"
        assert proxy.reply(cell)["content"]["status"] == "ok"
        assert "fresh" in stdout(proxy.iopub_until_idle(cell))
        assert proxy.lifecycle.bring_ups == started + 1
    finally:
        proxy.close()


def test_output_limit_caps_a_cells_output(local_kernel: KernelManager, tmp_path: Path) -> None:
    proxy = Proxy(local_kernel, tmp_path, output_limit="16k")
    try:
        proxy.client.wait_for_ready(timeout=TIMEOUT)
        reply, outputs = proxy.run("for i in range(2000): print('x' * 99, flush=(i % 50 == 0))")
        assert reply["content"]["status"] == "ok"
        shown = stdout(outputs)
        assert 0 < len(shown) <= 16 * 1024
        assert "passed the limit of" in stdout(outputs, "stderr")
        # The next cell has a limit of its own.
        _, outputs = proxy.run("print('small')")
        assert stdout(outputs) == "small\n"
    finally:
        proxy.close()


def test_the_inbound_filter_drops_a_message_type_it_does_not_know(proxy: Proxy) -> None:
    code = (
        "k = get_ipython().kernel\n"
        "k.session.send(k.iopub_socket, 'made_up_output', {'data': {'text/html': '<script>x</script>'}},"
        " parent=k.get_parent())\n"
        "print('after')"
    )
    reply, outputs = proxy.run(code)
    assert reply["content"]["status"] == "ok"
    assert stdout(outputs) == "after\n"
    assert not [m for m in outputs if m["msg_type"] == "made_up_output"]


def test_an_unknown_shell_request_does_not_wedge_the_relay(proxy: Proxy) -> None:
    proxy.client.shell_channel.send(proxy.client.session.msg("made_up_request", {}))
    reply, outputs = proxy.run("print('still here')")
    assert reply["content"]["status"] == "ok"
    assert stdout(outputs) == "still here\n"


def test_shutdown_answers_and_ends_the_relay(local_kernel: KernelManager, tmp_path: Path) -> None:
    proxy = Proxy(local_kernel, tmp_path)
    try:
        proxy.client.wait_for_ready(timeout=TIMEOUT)
        msg_id = proxy.client.shutdown()
        reply = proxy.client.get_control_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"
        proxy.thread.join(TIMEOUT)
        assert not proxy.thread.is_alive()
        assert proxy.lifecycle.released  # a shutdown without restart releases the sandbox
        assert not proxy.relay.restarting
    finally:
        proxy.close()


def test_a_cell_past_its_time_limit_is_interrupted(local_kernel: KernelManager, tmp_path: Path) -> None:
    proxy = Proxy(local_kernel, tmp_path, cell_timeout=0.5)
    try:
        proxy.client.wait_for_ready(timeout=TIMEOUT)
        reply, outputs = proxy.run("import time; time.sleep(60)")
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        assert "ran longer than its limit of 0.5 s" in stdout(outputs, "stderr")
        assert proxy.lifecycle.interrupts == 1
    finally:
        proxy.close()


def test_completion_offers_sandbox_beside_the_kernels_matches(proxy: Proxy) -> None:
    msg_id = proxy.client.complete("%sand", 5)
    reply = proxy.reply(msg_id)["content"]
    assert reply["status"] == "ok"
    assert reply["matches"][0] == "%sandbox"
    assert reply["cursor_start"] == 0 and reply["cursor_end"] == 5
    # A %sandbox line is completed on the host (the inner kernel does not know the magic).
    msg_id = proxy.client.complete("%sandbox sta", 12)
    reply = proxy.reply(msg_id)["content"]
    assert "status" in reply["matches"] and reply["cursor_start"] == len("%sandbox ")


def test_input_request_reaches_the_front_end_that_asked(proxy: Proxy) -> None:
    asked: list[str] = []

    def answer(message: dict[str, Any]) -> None:
        asked.append(message["content"]["prompt"])
        proxy.client.input("forty-two")

    outputs: list[dict[str, Any]] = []
    reply = proxy.client.execute_interactive(
        "print(input('name? '))", timeout=TIMEOUT, allow_stdin=True, stdin_hook=answer, output_hook=outputs.append
    )
    assert reply["content"]["status"] == "ok"
    assert asked == ["name? "]
    assert stdout(outputs) == "forty-two\n"


def test_kernel_info_is_answered_at_once_from_the_record_while_the_kernel_starts(
    local_kernel: KernelManager, tmp_path: Path
) -> None:
    recorded = {
        "status": "ok",
        "protocol_version": "5.3",
        "implementation": "recorded-ipython",
        "implementation_version": "1",
        "language_info": {"name": "python", "version": "3.11", "mimetype": "text/x-python"},
        "banner": "",
        "help_links": [],
    }
    proxy = Proxy(local_kernel, tmp_path, hold=True, recorded=recorded)
    try:
        msg_id = proxy.client.kernel_info()
        assert proxy.reply(msg_id)["content"]["implementation"] == "recorded-ipython"
        cell = proxy.client.execute("print('later')")
        with pytest.raises(queue.Empty):
            proxy.client.get_shell_msg(timeout=0.5)
        proxy.lifecycle.gate.set()
        assert proxy.reply(cell)["content"]["status"] == "ok"
    finally:
        proxy.close()
