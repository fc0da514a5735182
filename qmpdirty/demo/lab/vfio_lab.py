"""Run the VFIO stand-in from synchronous code: a real QEMU and a loop thread (lab).

``start_qemu`` launches ``qemu-system-x86_64`` stopped (``-S``) with one QMP socket;
``StandInThread`` runs a ``VfioStandIn`` in front of it on its own event loop, so
that synchronous callers (tests and the demo, whose daemon is a subprocess) can serve
scenarios and swap them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qmpdirty.demo.lab import DemoError, end_child, log_tail, track_child
from qmpdirty.demo.lab.vfio_hotplug import Plug
from qmpdirty.demo.lab.vfio_scenario import Scenario
from qmpdirty.demo.lab.vfio_standin import Endpoint, VfioStandIn

_T = TypeVar("_T")


def start_qemu(socket: Path, args: Sequence[str], log_path: Path,
               timeout_s: float = 20.0) -> subprocess.Popen[bytes]:
    """``qemu-system-x86_64`` stopped (``-S``) with one QMP server at ``socket``."""
    argv = ["qemu-system-x86_64", *args, "-qmp", f"unix:{socket},server=on,wait=off"]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    track_child(proc)
    deadline = time.monotonic() + timeout_s
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            end_child(proc)
            raise DemoError(f"QEMU did not start: {log_tail(log_path)}")
        time.sleep(0.02)
    return proc


class StandInThread:
    """A ``VfioStandIn`` on its own event loop thread, driven from synchronous code."""

    def __init__(self, qemu_socket: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vfio-standin",
                                        daemon=True)
        self._thread.start()
        self.standin = self.call(_started(qemu_socket))

    def call(self, coro: Coroutine[Any, Any, _T], timeout_s: float = 30.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def serve(self, path: Path, scenario: Scenario, plugs: tuple[Plug, ...] = ()) -> Endpoint:
        return self.call(self.standin.serve(path, scenario, plugs))

    def set_scenario(self, endpoint: Endpoint, scenario: Scenario,
                     event: tuple[str, dict[str, Any]] | None = None) -> None:
        self.call(self.standin.set_scenario(endpoint, scenario, event))

    @property
    def failures(self) -> list[str]:
        return list(self.standin.failures)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.standin.close(), 10.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)


async def _started(qemu_socket: Path) -> VfioStandIn:
    """Made on the loop that runs it (QMPClient binds to the running loop)."""
    return await VfioStandIn(qemu_socket).start()

