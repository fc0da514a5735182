"""A private mosquitto on a free loopback port, for the demo and the tests.

Anonymous, no persistence (a restart forgets retained messages, as a real outage may),
logging to a file in its own temporary directory. ``restart()`` keeps the port, so
clients can be tested across a broker outage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from qmpdirty.demo.lab import DemoError, end_child, free_port, log_tail, track_child

MOSQUITTO_BINARY = "mosquitto"


class Mosquitto:
    """One mosquitto process listening on 127.0.0.1."""

    def __init__(
        self,
        extra_config: Sequence[str] = (),
        port: int | None = None,
        binary: str = MOSQUITTO_BINARY,
    ) -> None:
        self.port = free_port() if port is None else port
        self.extra_config = tuple(extra_config)
        self.binary = binary
        self.run_dir = Path(tempfile.mkdtemp(prefix="qmpdirty-mosquitto-"))
        self.config_path = self.run_dir / "mosquitto.conf"
        self.log_path = self.run_dir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id, or None when it is not running."""
        return None if self._process is None else self._process.pid

    def start(self, timeout_s: float = 10.0) -> Self:
        """Start the broker and wait until its port accepts connections."""
        if self._process is not None and self._process.poll() is None:
            raise DemoError(f"mosquitto on port {self.port} is already running")
        if shutil.which(self.binary) is None:
            raise DemoError(f"{self.binary} not found: install mosquitto")
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, which cannot read run_dir
        self.config_path.write_text("\n".join([*lines, *self.extra_config]) + "\n")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        track_child(self._process)
        self._wait_listening(self._process, timeout_s)
        return self

    def _wait_listening(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                state = "exited" if process.poll() is not None else "is not listening"
                end_child(process)
                raise DemoError(
                    f"mosquitto on port {self.port} {state}:\n{log_tail(self.log_path)}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); the port and directory are kept."""
        if self._process is not None:
            end_child(self._process)

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL) and reap it."""
        if self._process is not None:
            self._process.kill()
            end_child(self._process)

    def restart(self, timeout_s: float = 10.0) -> Self:
        """Stop and start again on the same port."""
        self.stop()
        return self.start(timeout_s)

    def close(self) -> None:
        """Stop the broker and delete its directory (config and log)."""
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
