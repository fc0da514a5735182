"""Runs the real ``qmpdirty`` console script as a subprocess, with a generated config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

QMPDIRTY = str(Path(sys.executable).parent / "qmpdirty")


def write_config(path: Path, table: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


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
