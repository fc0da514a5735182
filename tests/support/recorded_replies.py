"""The QMP replies and events recorded from QEMU 10.0.2 under ``tests/data/qemu-10.0.2/``
(written by ``tests/data/record_replies.py``), for the translation and tracker tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qmpdirty.facts.vm import VmIdentity

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2"
MIB = 1024 * 1024


def load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def recorded(pattern: str) -> list[str]:
    names = sorted(p.name for p in RECORDED.glob(pattern))
    assert names, f"no recorded reply matches {pattern}"
    return names


def info_kwargs(**override: object) -> dict[str, Any]:
    """``translate.info_from``'s arguments from the recorded replies, some overridden."""
    kwargs: dict[str, Any] = {
        "version": (10, 0, 2),
        "identity": VmIdentity(name="qmpdirty-rec", uuid=None),
        "machine": "pc-i440fx-10.0",
        "kvm_reply": load("query-kvm.tcg.json"),
        "status_reply": load("query-status.running.json"),
        "cpus_reply": load("query-cpus-fast.tcg.json"),
        "memory_reply": load("query-memory-size-summary.tcg.json"),
        "migration_events": True,
    }
    kwargs.update(override)
    return kwargs
