"""A lab of real and fake QEMUs and a real mosquitto on loopback: demo, tests, benchmarks.

Real parts: ``guest`` builds a tiny guest (Debian cloud kernel + busybox + a program
that dirties memory at a known rate), ``qemu`` launches QEMUs running it, ``control``
drives them over QMP, ``broker`` runs a private mosquitto, ``daemon_process`` runs the
real ``qmpdirty`` with a test config, ``recorder`` records what reaches the broker.
Fake parts, faithful to QEMU's QMP: ``qmpwire`` (the wire format), ``fakeqmp`` (the
one fake QMP server core), ``recorded`` (a QEMU 10.0.2 replaying recorded replies),
``recorded_topology`` (a recorded topology gather answering a sans-I/O query);
the VFIO stand-in (``vfio_standin`` on ``vfio_scenario`` and ``qapi_schema``, run from
synchronous code by ``vfio_lab``) puts simulated VFIO devices in front of a real QEMU,
and ``fakehost`` builds the host trees (sysfs, debugfs) that go with them; and
``vfio_cases`` builds facts. Tests and benchmarks import all of these from here
(``bench/`` never imports ``tests/``). This module holds what they share: the error
type, free loopback ports, and the bookkeeping that makes sure no child process
outlives us. The lab is never imported by the daemon itself.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import socket
import subprocess
from pathlib import Path

from qmpdirty.demo.errors import DemoError

__all__ = ["DemoError", "end_child", "free_port", "log_tail", "track_child"]

_LIVE_CHILDREN: set[subprocess.Popen[bytes]] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def track_child(process: subprocess.Popen[bytes]) -> None:
    """Remember a child so that it is killed if the interpreter exits first."""
    _LIVE_CHILDREN.add(process)


def end_child(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> int:
    """Terminate a child (SIGKILL after ``timeout_s``), reap it, return its exit code."""
    _LIVE_CHILDREN.discard(process)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
            process.send_signal(signal.SIGCONT)  # a stopped process handles SIGTERM only now
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE_CHILDREN):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(5)
    _LIVE_CHILDREN.clear()
