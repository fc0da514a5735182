"""What a consumer that de-duplicates by ``seq`` may rely on, as a check over a recording.

README § Guarantees: for each VM, in the order a subscriber receives them, a message
whose ``seq`` is not above the highest ``seq`` already received from that VM is a copy
of a message already received (same topic, ``seq`` and payload). So a consumer that
keeps the highest ``seq`` per VM and ignores anything not above it loses nothing.
Only JSON payloads carry ``seq``; plain-text ones (``status``) and empty ones (a
cleared topic) are not checked. Messages a broker hands out from its retained store
on (re)subscription (``retain`` set) are the broker's copies, not the daemon's
delivery order, and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from qmpdirty.demo.lab.recorder import Received


def vm_of(topic: str) -> str | None:
    """``<prefix>/<host>/vm/<vm>/...`` -> ``<vm>``; None for the daemon's own topics."""
    parts = topic.split("/")
    return parts[3] if len(parts) > 4 and parts[2] == "vm" else None


def seq_of(msg: Received) -> int | None:
    try:
        body = json.loads(msg.payload)
    except ValueError:
        return None
    seq = body.get("seq") if isinstance(body, dict) else None
    return seq if isinstance(seq, int) else None


def backwards(messages: Iterable[Received]) -> list[str]:
    """Every message that arrived after a higher ``seq`` of its VM without being a copy
    of one received before: what a de-duplicating consumer would wrongly throw away."""
    highest: dict[str, int] = {}
    seen: set[tuple[str, int, bytes]] = set()
    wrong: list[str] = []
    for msg in messages:
        vm, seq = vm_of(msg.topic), seq_of(msg)
        if vm is None or seq is None or msg.retain:
            continue
        key = (msg.topic, seq, msg.payload)
        if seq <= highest.get(vm, -1) and key not in seen:
            wrong.append(f"{msg.topic} seq {seq} after seq {highest[vm]}")
        seen.add(key)
        highest[vm] = max(highest.get(vm, -1), seq)
    return wrong
