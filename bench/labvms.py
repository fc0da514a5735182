"""A few real QEMUs (the lab's TCG guest) among the fake ones, for realism.

Each VM has two QMP monitors: one for the daemon (``sockets``) and one the benchmark
controls it through (with ``poll_monitor``, a third for a polling baseline). ``poke``
makes every VM STOP and RESUME through its control monitor, so real QEMU events, with
QEMU's own timestamps, flow through the daemon beside the fake fleet's. The guests
dirty 1 MiB/s: enough to be alive, light on TCG.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.guest import ensure_guest
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm

ROOT = Path(__file__).resolve().parent.parent


class LabVms:
    """``count`` real QEMUs named ``real-<i>``; nothing is started when count is 0."""

    def __init__(self, count: int, *, poll_monitor: bool = False) -> None:
        self.count = count
        self.poll_monitor = poll_monitor
        self.poll_sockets: list[Path] = []
        self.dir = Path(tempfile.mkdtemp(prefix="qdlab-", dir="/tmp"))
        self.vms: list[QemuVm] = []
        self.controls: list[QmpControl] = []
        self.sockets: list[Path] = []
        self._stop = threading.Event()
        self._poker: threading.Thread | None = None
        self.pokes = 0

    def start(self, timeout_s: float = 90.0) -> Self:
        if not self.count:
            return self
        guest = ensure_guest(ROOT / ".cache" / "guest")
        for i in range(self.count):
            daemon_sock, control_sock = self.dir / f"real-{i}.qmp", self.dir / f"real-{i}.ctl"
            poll = (self.dir / f"real-{i}.poll",) if self.poll_monitor else ()
            self.poll_sockets += poll
            spec = QemuSpec(name=f"real-{i}", mem_mib=128, rate_mib=1, wss_mib=8,
                            qmp_servers=(daemon_sock, *poll, control_sock))
            self.vms.append(QemuVm(spec, guest, self.dir / f"vm{i}").start())
            self.sockets.append(daemon_sock)
        for vm in self.vms:
            vm.wait_ready(timeout_s)
            self.controls.append(QmpControl(vm.spec.qmp_servers[-1]))
        return self

    def poke(self, every_s: float = 2.0) -> None:
        """From now until ``close``: STOP then RESUME each VM every ``every_s``."""
        def loop() -> None:
            while not self._stop.wait(every_s):
                for control in self.controls:
                    control.cmd("stop")
                    time.sleep(0.1)
                    control.cmd("cont")
                    self.pokes += 1

        if self.controls and self._poker is None:
            self._poker = threading.Thread(target=loop, name="lab-poke", daemon=True)
            self._poker.start()

    def close(self) -> None:
        self._stop.set()
        if self._poker is not None:
            self._poker.join(10)
        for control in self.controls:
            with contextlib.suppress(Exception):
                control.close()
        for vm in self.vms:
            vm.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
