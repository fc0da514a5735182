"""The benchmarks' handle on a fake QEMU fleet (``bench/fleet.py``) in its own process.

``FakeFleet`` starts ``python -m bench.fleet`` (uvloop), waits for its ``READY``
line, lists its sockets and talks to its control socket (one JSON line each way).
Nothing here runs in the fleet's process: the daemon, the fleet, the broker and the
benchmark are four processes, so each one's CPU and memory are its own.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from qmpdirty.demo.lab import end_child, track_child

ROOT = Path(__file__).resolve().parent.parent


class FakeFleet:
    """``count`` fake QEMUs listening under a fresh directory in /tmp."""

    def __init__(self, count: int, *, event_rate: float = 0.0, migrating: int = 0,
                 rest_s: float = 5.0, monitors: int = 1) -> None:
        self.count = count
        self.dir = Path(tempfile.mkdtemp(prefix="qdfake-", dir="/tmp"))
        self.argv = [sys.executable, "-m", "bench.fleet", "--count", str(count),
                     "--dir", str(self.dir), "--monitors", str(monitors),
                     "--event-rate", str(event_rate), "--migrating", str(migrating),
                     "--rest-s", str(rest_s)]
        self.proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._pending = b""

    def start(self, timeout_s: float = 60.0) -> Self:
        with (self.dir / "fake.log").open("wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=log)
        track_child(self.proc)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else b""
        if not line.startswith(b"READY"):
            self.close()
            raise RuntimeError(f"fake fleet did not start: {line!r}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def socket(self, index: int, monitor: int = 1) -> Path:
        """The QMP socket of VM ``index`` (``monitor`` 2: its second monitor)."""
        base = self.dir if monitor == 1 else self.dir / f"mon{monitor}"
        return base / f"vm-{index}.qmp"

    def sockets(self) -> list[Path]:
        return [self.socket(i) for i in range(self.count)]

    def control(self, op: str, **fields: Any) -> dict[str, Any]:
        """One control request; raises on an error answer."""
        if self._control is None:
            self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._control.settimeout(10)
            self._control.connect(str(self.dir / "control.sock"))
        self._control.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        while b"\n" not in self._pending:
            chunk = self._control.recv(1 << 20)
            if not chunk:
                raise ConnectionError("fake fleet closed its control socket")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"fake fleet: {op}: {answer['error']}")
        return answer

    def wait_connected(self, count: int, timeout_s: float) -> float:
        """Wait until ``count`` VMs have a monitor connection; returns seconds waited."""
        started = time.monotonic()
        while self.control("stats")["connected"] < count:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"only {self.control('stats')['connected']} of {count} "
                                   "fake VMs connected")
            time.sleep(0.1)
        return time.monotonic() - started

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.proc is not None:
            end_child(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
