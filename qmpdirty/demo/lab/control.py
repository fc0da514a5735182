"""Drive a lab QEMU over QMP from synchronous code: tests, benchmarks and the demo.

``QmpControl`` is the lab's own QMP client, kept apart from the daemon's (which is
qemu.qmp): a blocking socket speaking the lab's QMP wire module (``qmpwire``), usable
from any thread. The functions below are the few commands tests and the demo send to
make things happen (migrations, bandwidth caps, dirty-rate measurements); QEMU's
error replies become ``LabCommandError``, anything else that goes wrong ``DemoError``.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Self, cast

from qmpdirty.demo.lab import DemoError, qmpwire

FINAL_MIGRATION_STATES = frozenset({"completed", "failed", "cancelled"})


class LabCommandError(DemoError):
    """QEMU answered a QMP command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"{command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QmpControl:
    """A synchronous QMP client for tests, benchmarks and the demo; usable from any thread.

    A blocking socket speaking ``qmpwire`` (the lab's QMP wire module): it reads the
    greeting, negotiates, and matches each reply to its command by ``id``; events read
    on the way are kept for ``events``. Calls are serialised; each has ``timeout_s``.
    """

    def __init__(self, address: Path | str | tuple[str, int], timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._framer = qmpwire.Framer()
        self._inbox: deque[Any] = deque()
        self._events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._socket: socket.socket | None = None
        try:
            if isinstance(address, tuple):
                self._socket = socket.create_connection(address, timeout_s)
            else:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._socket.settimeout(timeout_s)
                self._socket.connect(str(address))
            self._socket.settimeout(None)  # waits go through select() with a deadline
            greeting = self._reply_by(time.monotonic() + timeout_s, "connect")
            if not isinstance(greeting, dict) or "QMP" not in greeting:
                raise DemoError(f"QMP at {address}: not a QMP greeting: {greeting!r}")
            self.cmd(qmpwire.NEGOTIATE)
        except OSError as exc:
            self.close()
            raise DemoError(f"QMP connect at {address}: {exc!r}") from exc
        except DemoError:
            self.close()
            raise

    def cmd(self, name: str, **args: object) -> object:
        """Execute a QMP command; returns its ``return`` value, raises LabCommandError."""
        with self._lock:
            msg_id = next(self._ids)
            try:
                self._open(name).sendall(qmpwire.execute(name, args, msg_id))
            except OSError as exc:
                raise DemoError(f"QMP {name} at {self.address}: {exc!r}") from exc
            deadline = time.monotonic() + self.timeout_s
            reply = None
            while not (isinstance(reply, dict) and reply.get("id") == msg_id):
                reply = self._reply_by(deadline, name)  # a late reply to a timed-out call
        if "error" in reply:
            error = reply["error"]
            raise LabCommandError(name, str(error.get("class")), str(error.get("desc")))
        return reply.get("return")

    def events(self, wait_s: float = 0.0) -> list[dict[str, Any]]:
        """Take the QMP events received so far, waiting up to ``wait_s`` for a first one."""
        with self._lock:
            deadline = time.monotonic() + wait_s
            with contextlib.suppress(TimeoutError):
                while True:  # whatever has arrived already
                    self._next(time.monotonic())
            with contextlib.suppress(TimeoutError):
                while not self._events:
                    self._next(deadline)
            events, self._events = self._events, []
            return events

    def close(self) -> None:
        """Disconnect (idempotent)."""
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _open(self, what: str) -> socket.socket:
        if self._socket is None:
            raise DemoError(f"QMP {what}: the control at {self.address} is closed")
        return self._socket

    def _reply_by(self, deadline: float, what: str) -> Any:
        """The next message that is not an event; DemoError after ``deadline``."""
        try:
            return self._next(deadline)
        except TimeoutError as exc:
            raise DemoError(f"QMP {what} at {self.address}: no reply within "
                            f"{self.timeout_s:g} s") from exc

    def _next(self, deadline: float) -> Any:
        """The next message that is not an event (events are kept); TimeoutError when
        nothing more arrives by ``deadline``, DemoError when QEMU hangs up."""
        while True:
            while self._inbox:
                message = self._inbox.popleft()
                if not (isinstance(message, dict) and "event" in message):
                    return message
                self._events.append(message)
            sock = self._open("read")
            try:
                readable, _, _ = select.select([sock], [], [],
                                               max(0.0, deadline - time.monotonic()))
                data = sock.recv(65536) if readable else None
            except (OSError, ValueError) as exc:  # ValueError: closed meanwhile
                raise DemoError(f"QMP at {self.address}: {exc!r}") from exc
            if data is None:
                raise TimeoutError
            if not data:
                raise DemoError(f"QMP at {self.address}: QEMU closed the connection")
            self._inbox.extend(self._framer.feed(data))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _as_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DemoError(f"{what}: expected a JSON object, got {value!r}")
    return cast(dict[str, Any], value)


def enable_events(control: QmpControl) -> None:
    """Turn on the ``events`` migration capability (MIGRATION / MIGRATION_PASS events)."""
    control.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])


def set_max_bandwidth(control: QmpControl, bytes_per_s: int) -> None:
    """Cap the migration bandwidth (``migrate-set-parameters max-bandwidth``)."""
    control.cmd("migrate-set-parameters", **{"max-bandwidth": bytes_per_s})


def migrate_incoming(control: QmpControl, uri: str) -> None:
    """Make an ``-incoming defer`` VM listen on ``uri`` (e.g. ``tcp:127.0.0.1:PORT``)."""
    control.cmd("migrate-incoming", uri=uri)


def migrate(control: QmpControl, uri: str) -> None:
    """Start migrating the VM to ``uri``; returns at once."""
    control.cmd("migrate", uri=uri)


def query_migrate(control: QmpControl) -> dict[str, Any]:
    """``query-migrate``: has no ``status`` key when no migration ever ran."""
    return _as_dict(control.cmd("query-migrate"), "query-migrate")


def wait_for_migration(control: QmpControl, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll ``query-migrate`` until completed, failed or cancelled; returns the last reply."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = query_migrate(control)
        if info.get("status") in FINAL_MIGRATION_STATES:
            return info
        if time.monotonic() > deadline:
            raise DemoError(f"migration not finished after {timeout_s:.0f} s: {info}")
        time.sleep(0.1)


def measure_dirty_rate(
    control: QmpControl, calc_time_s: int = 1, sample_pages: int = 16384, timeout_s: float = 30.0
) -> float:
    """Measure the guest's dirty rate (MiB/s) with page-sampling ``calc-dirty-rate``.

    ``sample_pages`` is per GiB of guest RAM (QEMU caps it at 16384). QEMU's default
    (512) samples only 128 pages of a 256 MiB guest: figures then scatter by +-25 %.
    """
    control.cmd(
        "calc-dirty-rate",
        **{"calc-time": calc_time_s, "sample-pages": sample_pages, "mode": "page-sampling"},
    )
    deadline = time.monotonic() + timeout_s
    while True:
        reply = _as_dict(control.cmd("query-dirty-rate"), "query-dirty-rate")
        if reply.get("status") == "measured":
            return float(reply["dirty-rate"])
        if time.monotonic() > deadline:
            raise DemoError(f"dirty rate not measured after {timeout_s:.0f} s: {reply}")
        time.sleep(0.1)
