"""Launch lab QEMUs running the dirtying guest, and drive them over a control monitor.

``QemuVm`` runs one ``qemu-system-x86_64`` (always TCG: Linux guests hang under the
nested KVM of the project's machines) with the QMP endpoints a test needs: UNIX or TCP
servers the daemon or the test connects to, and a socket QEMU dials (the daemon's
server mode). ``QmpControl`` is the test's own synchronous QMP client, kept apart from
the daemon's. This is the only lab module that imports ``qemu.qmp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar, cast

from qemu.qmp import ExecuteError, QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from qmpdirty.demo.lab import DemoError, end_child, log_tail, track_child
from qmpdirty.demo.lab import free_port as free_port  # noqa: PLC0414 (explicit re-export)
from qmpdirty.demo.lab.guest import GuestImage, kernel_cmdline, ready_line

QEMU_BINARY = "qemu-system-x86_64"
DIAL_CHARDEV_ID = "qmpdirty"
FINAL_MIGRATION_STATES = frozenset({"completed", "failed", "cancelled"})
_T = TypeVar("_T")


@dataclass(frozen=True)
class QemuSpec:
    """What to launch: guest size and dirtying, and how QMP reaches the VM."""

    name: str
    mem_mib: int = 256
    rate_mib: int = 16
    wss_mib: int = 64
    qmp_servers: tuple[Path, ...] = ()
    qmp_tcp_port: int | None = None
    dial_socket: Path | None = None
    incoming: str | None = None
    extra_args: tuple[str, ...] = ()
    vcpus: int = 1

    def argv(self, guest: GuestImage, serial_log: Path, binary: str = QEMU_BINARY) -> list[str]:
        """The QEMU command line for this spec."""
        if "," in self.name:
            raise DemoError(f"VM name {self.name!r}: commas would need QEMU option escaping")
        append = kernel_cmdline(self.rate_mib, self.wss_mib)
        argv = [binary, "-name", self.name, "-accel", "tcg", "-nodefaults", "-display", "none"]
        argv += ["-m", str(self.mem_mib), "-smp", str(self.vcpus), "-no-reboot"]
        argv += ["-serial", f"file:{serial_log}", "-kernel", str(guest.kernel)]
        argv += ["-initrd", str(guest.initrd), "-append", append]
        for path in self.qmp_servers:
            argv += ["-qmp", f"unix:{path},server=on,wait=off"]
        if self.qmp_tcp_port is not None:
            argv += ["-qmp", f"tcp:127.0.0.1:{self.qmp_tcp_port},server=on,wait=off"]
        if self.dial_socket is not None:
            argv += [
                "-chardev",
                f"socket,id={DIAL_CHARDEV_ID},path={self.dial_socket},server=off,reconnect-ms=500",
                "-mon",
                f"chardev={DIAL_CHARDEV_ID},mode=control",
            ]
        if self.incoming is not None:
            argv += ["-incoming", self.incoming]
        return [*argv, *self.extra_args]

    @property
    def control_address(self) -> Path | tuple[str, int]:
        """The QMP server a test controls the VM through: the last UNIX one, else TCP."""
        if self.qmp_servers:
            return self.qmp_servers[-1]
        if self.qmp_tcp_port is not None:
            return ("127.0.0.1", self.qmp_tcp_port)
        raise DemoError(f"VM {self.name}: the spec has no QMP server to control it through")


class QemuVm:
    """One running lab QEMU; logs (serial console, stderr) go to files in ``run_dir``."""

    def __init__(
        self,
        spec: QemuSpec,
        guest: GuestImage,
        run_dir: Path | None = None,
        binary: str = QEMU_BINARY,
    ) -> None:
        self.spec = spec
        self.guest = guest
        self.binary = binary
        self._own_dir = run_dir is None
        self.run_dir = (
            Path(tempfile.mkdtemp(prefix="qmpdirty-lab-")) if run_dir is None else run_dir
        )
        self.serial_log = self.run_dir / f"{spec.name}.serial.log"
        self.stderr_log = self.run_dir / f"{spec.name}.stderr.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Launch QEMU (returns at once; see ``wait_ready`` / ``wait_qmp``)."""
        if self._process is not None:
            raise DemoError(f"VM {self.spec.name} was already started")
        if shutil.which(self.binary) is None:
            raise DemoError(f"{self.binary} not found: install qemu-system-x86 (>= 10)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.serial_log.write_bytes(b"")
        argv = self.spec.argv(self.guest, self.serial_log, self.binary)
        with self.stderr_log.open("wb") as stderr:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        track_child(self._process)
        return self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The QEMU child process (raises if not started)."""
        if self._process is None:
            raise DemoError(f"VM {self.spec.name} was not started")
        return self._process

    @property
    def pid(self) -> int:
        """QEMU's process id."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """QEMU's exit code, or None while it runs."""
        return self.process.poll()

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Wait for the guest's dirtier ready line; returns seconds since this call."""
        expected = ready_line(self.spec.rate_mib, self.spec.wss_mib)
        return self._wait(
            timeout_s,
            "the guest's ready line",
            lambda: expected in self.serial_log.read_text(errors="replace"),
        )

    def wait_qmp(self, timeout_s: float = 30.0) -> float:
        """Wait until the control QMP server accepts connections (e.g. an ``-incoming`` VM)."""
        address = self.spec.control_address
        family = socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET
        target = str(address) if isinstance(address, Path) else address

        def accepts() -> bool:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(target)
                except OSError:
                    return False
                return True

        return self._wait(timeout_s, f"QMP at {address}", accepts)

    def _wait(self, timeout_s: float, what: str, done: Callable[[], bool]) -> float:
        started = time.monotonic()
        while not done():
            if self.returncode is not None:
                raise DemoError(
                    f"VM {self.spec.name} exited with {self.returncode} before "
                    f"{what}{self.describe_logs()}"
                )
            if time.monotonic() - started > timeout_s:
                raise DemoError(
                    f"VM {self.spec.name}: no {what} after {timeout_s:.0f} s{self.describe_logs()}"
                )
            time.sleep(0.05)
        return time.monotonic() - started

    def describe_logs(self) -> str:
        """The tails of the serial console and stderr logs, for error messages."""
        return (
            f"\n--- serial console ({self.serial_log}) ---\n{log_tail(self.serial_log)}"
            f"\n--- stderr ({self.stderr_log}) ---\n{log_tail(self.stderr_log)}"
        )

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to QEMU (e.g. SIGSTOP to freeze it)."""
        if self.returncode is None:
            self.process.send_signal(sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) and reap QEMU once it has died."""
        self.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Terminate QEMU (SIGKILL after ``timeout_s``); returns its exit code."""
        code = None if self._process is None else end_child(self._process, timeout_s)
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return code

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class LabCommandError(DemoError):
    """QEMU answered a QMP command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"{command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class _LoopThread:
    """A daemon thread owning the event loop the legacy synchronous client needs.

    The legacy client runs its loop with ``run_until_complete``, which fails inside a
    running loop; on its own thread the client works from sync and async tests alike,
    and a hung call cannot keep the interpreter from exiting.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        while (job := self._jobs.get()) is not None:
            work, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:  # handed to the caller's thread
                    future.set_exception(exc)
        loop.close()

    def call(self, work: Callable[[], _T], timeout_s: float) -> _T:
        """Run ``work`` on the loop thread and return its result."""
        future: Future[_T] = Future()
        self._jobs.put((work, future))
        return future.result(timeout_s)

    def close(self) -> None:
        """Let the thread finish once queued work is done."""
        self._jobs.put(None)


class QmpControl:
    """A synchronous QMP client for tests and the demo; usable from any thread."""

    def __init__(self, address: Path | str | tuple[str, int], timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._thread = _LoopThread(f"qmp-control {address}")
        self._monitor: QEMUMonitorProtocol | None = None
        try:
            self._monitor = self._call("connect", self._connect)
        except DemoError:
            self._thread.close()
            raise

    def _connect(self) -> QEMUMonitorProtocol:
        monitor = QEMUMonitorProtocol(
            str(self.address) if isinstance(self.address, Path) else self.address
        )
        monitor.settimeout(self.timeout_s)
        monitor.connect()
        return monitor

    def _call(self, what: str, work: Callable[[], _T]) -> _T:
        try:
            return self._thread.call(work, self.timeout_s + 5.0)
        except ExecuteError as exc:
            raise LabCommandError(what, exc.error_class, exc.error.error.desc) from exc
        except (QMPError, OSError, TimeoutError) as exc:
            raise DemoError(f"QMP {what} at {self.address}: {exc!r}") from exc

    def _require(self) -> QEMUMonitorProtocol:
        if self._monitor is None:
            raise DemoError(f"QMP control at {self.address} is closed")
        return self._monitor

    def cmd(self, name: str, **args: object) -> object:
        """Execute a QMP command; returns its ``return`` value, raises LabCommandError."""
        monitor = self._require()
        return self._call(name, lambda: monitor.cmd(name, **args))

    def events(self, wait_s: float = 0.0) -> list[dict[str, Any]]:
        """Take the QMP events received so far, waiting up to ``wait_s`` for a first one."""
        monitor = self._require()

        def take() -> list[dict[str, Any]]:
            try:
                return monitor.get_events(wait=float(wait_s) if wait_s > 0 else False)
            except TimeoutError:
                return []

        return self._call("events", take)

    def close(self) -> None:
        """Disconnect (idempotent; a dead QEMU's transport error is ignored)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            with contextlib.suppress(DemoError):
                self._call("close", monitor.close)
            self._thread.close()

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
