"""Shared pieces of the system tests: config tables and a running daemon fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.broker import Mosquitto

HOST = "testhost"
PREFIX = f"qmpdirty/{HOST}"


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
    """A short socket path (AF_UNIX paths are limited to 107 bytes)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))
    return d / f"{name}.sock"
