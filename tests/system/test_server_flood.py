"""Server mode survives descriptor exhaustion (issue 12, item 2), with real QEMU and mosquitto.

The daemon runs under ``prlimit --nofile=192:192`` (a hard limit it cannot raise; the
operator's report used the default 1,024 and 1,100 connections, which takes longer to
reach here), and 400 connections that never send a greeting are opened on its socket
from 200 threads. Before, ``accept()`` failed with EMFILE, nothing caught it and the
daemon exited 1. Now it keeps running, says so in a few summarised lines (not one per
connection), and a real QEMU that dials in after the flood is served.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import (
    PREFIX,
    QMPDIRTY,
    DaemonProcess,
    base_config,
    sock,
    vm_topic,
)
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder

pytestmark = pytest.mark.system

#: The daemon starts with about 70 descriptors (loop, broker, logs, pipes): a limit of 192
#: is exhausted by the flood within a second, where 1,024 needs a slower, longer one.
FLOOD = 400
LIMIT = 192
FLOOD_S = 4.0
THREADS = 200


class LimitedDaemon(DaemonProcess):
    """The daemon with RLIMIT_NOFILE pinned at ``LIMIT`` (soft and hard)."""

    def start(self) -> LimitedDaemon:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["prlimit", f"--nofile={LIMIT}:{LIMIT}", "--", QMPDIRTY, "run", "--config",
                 str(self.config)], stdout=log, stderr=log, env=self._env,
                start_new_session=True)
        return self


def _connect(path: Path, deadline: float) -> socket.socket | None:
    """One connection that never says anything; None if the backlog stayed full."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        return None
    return s


@contextlib.contextmanager
def silent_connections(path: Path, count: int) -> Iterator[list[socket.socket]]:
    """Up to ``count`` connections to ``path`` that never say anything, from many threads
    at once, each waiting for room in the listen backlog until ``FLOOD_S`` has passed
    (the test raises its own soft limit for them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 512)), hard))
    deadline = time.monotonic() + FLOOD_S
    conns: list[socket.socket] = []
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            found = pool.map(lambda _: _connect(path, deadline), range(count))
            conns = [c for c in found if c is not None]
        yield conns
    finally:
        for c in conns:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_server_mode_survives_descriptor_exhaustion(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    listen = sock(tmp_path, "server")
    control = sock(tmp_path, "ctl")
    table = base_config(broker, server={"socket": str(listen), "mode": "0600"},
                        qmp={"connect_timeout_s": 10.0})
    daemon = LimitedDaemon(tmp_path, table).start()
    try:
        recorder.wait_text(f"{PREFIX}/status", "online", 15)
        with silent_connections(listen, FLOOD) as held:
            assert len(held) >= 2 * 64, len(held)  # the flood reached the daemon
            time.sleep(1)
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
        assert daemon.proc.poll() is None, daemon.log()
        time.sleep(11)  # the held ones' greeting timed out (10 s): one summary line
        log = daemon.log()
        warnings = [line for line in log.splitlines() if "WARNING" in line]
        assert any("failed the QMP handshake" in line for line in warnings), log[-3000:]
        assert len(warnings) < 50, f"{len(warnings)} warning lines for {FLOOD} connections"

        joined = time.time()
        vm = lab_vm(QemuSpec(name="late", dial_socket=listen, qmp_servers=(control,),
                             rate_mib=2))
        recorder.wait_text(vm_topic("late", "status"), "online", 30, after=joined)
        info = recorder.wait_for(lambda ms: [m.json for m in ms
                                             if m.topic == vm_topic("late", "info")])
        assert info[-1]["pid"] == vm.pid
    finally:
        code, _took = daemon.stop()
        daemon.close()
    assert code == 0, daemon.log()[-3000:]
