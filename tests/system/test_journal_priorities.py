"""Under systemd the daemon's every log line carries its syslog priority, so that
``journalctl -p warning -u qmpdirty`` works (README § systemd). No journald is needed:
``JOURNAL_STREAM`` is what the daemon looks at, and its stderr is read here."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock

pytestmark = pytest.mark.system


def _wait_for(daemon: DaemonProcess, pattern: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not re.search(pattern, daemon.log(), re.M):
        assert time.monotonic() < deadline, f"{pattern!r} not logged:\n{daemon.log()}"
        time.sleep(0.2)


def test_every_line_starts_with_its_priority(broker: Mosquitto, tmp_path: Path) -> None:
    missing = sock(tmp_path, "nobody")  # nothing listens: the daemon warns about it
    table = base_config(broker, vm=[{"name": "ghost", "qmp": f"unix:{missing}"}])
    daemon = DaemonProcess(tmp_path, table, env={"JOURNAL_STREAM": "8:4242"}).start()
    try:
        _wait_for(daemon, r"^<6>INFO ")
        _wait_for(daemon, r"^<[0-4]>")
        code, _ = daemon.stop()
    finally:
        daemon.close()
    assert code == 0, daemon.log()
    lines = [line for line in daemon.log().splitlines() if line]
    assert lines
    bad = [line for line in lines if not re.match(r"<[0-7]>", line)]
    assert not bad, bad
    assert any(line.startswith("<6>INFO ") for line in lines)
    assert any(re.match(r"<[34]>(WARNING|ERROR) ", line) for line in lines), lines
