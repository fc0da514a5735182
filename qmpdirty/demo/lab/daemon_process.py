"""The real daemon as a child process, with the test configuration it runs under.

For the system tests, the benchmarks and the demo: ``DaemonProcess`` runs the
``qmpdirty`` console script (``qmpdirty run --config PATH``) in its own session with
a generated config, logs to ``<workdir>/daemon.log``, and stops it with SIGTERM as
systemd would. ``base_config`` is the table tests start from (the lab broker, fast
reconnects, debug logs), ``vm_topic`` names a VM's topic under ``HOST``, and ``sock``
gives a socket path short enough for AF_UNIX. Writing the config needs ``tomli-w``
(the ``dev`` extra). Must not: import the daemon itself; it is driven as operators do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w

from qmpdirty.demo.lab.broker import Mosquitto

#: The console script installed beside this interpreter.
QMPDIRTY = str(Path(sys.executable).parent / "qmpdirty")
HOST = "testhost"
PREFIX = f"qmpdirty/{HOST}"


def write_config(path: Path, table: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def base_config(broker: Mosquitto, **sections: dict[str, Any] | list[dict[str, Any]]
                ) -> dict[str, Any]:
    """A daemon config for tests: the test broker, fast reconnects, debug logs."""
    table: dict[str, Any] = {
        "mqtt": {"url": broker.url, "reconnect_max_s": 0.5},
        "host": {"name": HOST},
        "qmp": {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, "command_timeout_s": 5.0},
        "dirty_rate": {"enabled": False},
        "discovery": {"rescan_interval_s": 0.5},
        "daemon": {"log_level": "debug", "shutdown_deadline_s": 5.0},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(table.get(name), dict):
            table[name] = {**table[name], **value}
        else:
            table[name] = value
    return table


def vm_topic(vm: str, suffix: str) -> str:
    return f"{PREFIX}/vm/{vm}/{suffix}"


def sock(tmp_path: Path, name: str) -> Path:
    """A short socket path in a fresh directory under /tmp (AF_UNIX paths are limited
    to 107 bytes, which pytest's ``tmp_path`` can exceed; ``tmp_path`` is not used)."""
    d = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))
    return d / f"{name}.sock"


class DaemonProcess:
    """``qmpdirty run --config PATH``; logs go to ``<dir>/daemon.log``."""

    def __init__(self, workdir: Path, table: dict[str, Any], env: dict[str, str] | None = None):
        self.workdir = workdir
        self.config = write_config(workdir / "qmpdirty.toml", table)
        self.log_path = workdir / "daemon.log"
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [QMPDIRTY, "run", "--config", str(self.config)], stdout=log, stderr=log,
                env=self._env, start_new_session=True,
            )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 15.0) -> tuple[int, float]:
        """SIGTERM and wait: (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not stop within {timeout_s}s:\n{self.log()}") from exc
        return code, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
