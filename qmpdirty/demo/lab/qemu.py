"""Launch lab QEMUs running the dirtying guest, with the QMP endpoints a test needs.

``QemuVm`` runs one ``qemu-system-x86_64`` (always TCG: Linux guests hang under the
nested KVM of the project's machines) with the QMP endpoints a test needs: UNIX or TCP
servers the daemon or the test connects to, and a socket QEMU dials (the daemon's
server mode). Driving one over QMP is ``control``'s.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from qmpdirty.demo.lab import DemoError, end_child, log_tail, track_child
from qmpdirty.demo.lab import free_port as free_port  # noqa: PLC0414 (explicit re-export)
from qmpdirty.demo.lab.guest import GuestImage, kernel_cmdline, ready_line

QEMU_BINARY = "qemu-system-x86_64"
DIAL_CHARDEV_ID = "qmpdirty"
BALLOON_ID = "balloon0"


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
    #: a ``virtio-balloon-pci`` (id ``balloon0``) with the guest's driver loaded; its
    #: memory statistics flow once ``guest-stats-polling-interval`` is set
    balloon: bool = False
    #: guest RAM from a ``memory-backend-ram`` with ``reserve=off`` (``MAP_NORESERVE``):
    #: a guest larger than the host's memory starts, and only what it touches is backed
    #: (a 64 GiB lab guest holds about 2 GiB)
    lazy_ram: bool = False

    def argv(self, guest: GuestImage, serial_log: Path, binary: str = QEMU_BINARY) -> list[str]:
        """The QEMU command line for this spec."""
        if "," in self.name:
            raise DemoError(f"VM name {self.name!r}: commas would need QEMU option escaping")
        append = kernel_cmdline(self.rate_mib, self.wss_mib, self.balloon)
        argv = [binary, "-name", self.name, "-accel", "tcg", "-nodefaults", "-display", "none"]
        argv += ["-m", str(self.mem_mib), "-smp", str(self.vcpus), "-no-reboot"]
        if self.lazy_ram:
            argv += ["-object", f"memory-backend-ram,id=ram0,size={self.mem_mib}M,reserve=off",
                     "-machine", "memory-backend=ram0"]
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
        if self.balloon:
            argv += ["-device", f"virtio-balloon-pci,id={BALLOON_ID}"]
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
