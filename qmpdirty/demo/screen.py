"""The demo's screen: what the daemon publishes, one line per change (demo).

``Screen.feed`` takes each message a ``mosquitto_sub`` child prints (``topic payload``),
keeps it for ``wait``, validates it with the daemon's payload model and prints its
blocks (``lines``) when they changed since the last ones printed under the same key:
no line is printed twice in a row for a VM, however often the daemon re-publishes.

What is shown, and for whom:

* every VM: its QMP session, ``info`` (role), ``tracking`` (VFIO devices and containers),
  ``blockers``, migration progress, pass records and summary, DEVICE_DELETED events;
* the VM the demo migrates (``watched``): its dirty rate (``calc-dirty-rate``'s) and
  pre-migration forecast (once it is known), while its guest runs and no migration is
  under way (a migration's own lines carry its dirty rate then; a destination has none);
* ``simulated`` VMs have their VFIO devices marked "(simulated)".

Must not: decide anything about a VM (the daemon did), or talk to QEMU.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from qmpdirty.demo import lines
from qmpdirty.demo.errors import DemoError
from qmpdirty.telemetry.schema import (
    BlockersPayload,
    DirtyRatePayload,
    EventPayload,
    ForecastPayload,
    InfoPayload,
    MigrationPayload,
    PassPayload,
    SummaryPayload,
    TrackingPayload,
)

MODELS: dict[str, type[BaseModel]] = {
    "info": InfoPayload, "tracking": TrackingPayload, "blockers": BlockersPayload,
    "dirty_rate": DirtyRatePayload, "forecast": ForecastPayload,
    "migration": MigrationPayload, "migration/pass": PassPayload,
    "migration/summary": SummaryPayload, "event/DEVICE_DELETED": EventPayload,
}
#: Migration statuses after which nothing more moves.
ENDED = frozenset({"none", "completed", "failed", "cancelled"})


class Screen:
    """Prints telemetry as it arrives and lets the story wait for it."""

    def __init__(self, started: float, watched: str, simulated: frozenset[str]) -> None:
        self.started = started
        self.watched = watched
        self.simulated = simulated
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.RLock()  # say() prints under it, from any thread
        self.changed = threading.Condition(self.lock)
        self._printed: dict[tuple[str, str], tuple[str, ...]] = {}
        self._models: dict[str, BaseModel] = {}  # the newest valid payload of vm/kind

    def say(self, vm: str, text: str) -> None:
        """One line, stamped with the demo's clock and the VM's name."""
        with self.lock:
            print(f"[{time.monotonic() - self.started:5.1f}s] {vm:<6} {text}", flush=True)

    def feed(self, line: str) -> None:
        """One ``topic payload`` line from the subscriber."""
        topic, _, payload = line.partition(" ")
        parts = topic.split("/")
        if len(parts) < 5 or parts[2] != "vm":
            return
        vm, kind = parts[3], "/".join(parts[4:])
        body: dict[str, Any] = json.loads(payload) if payload.startswith("{") else {"text": payload}
        with self.lock:
            self.seen.setdefault(f"{vm}/{kind}", []).append(body)
            self.changed.notify_all()
            self._show(vm, kind, body)

    def _show(self, vm: str, kind: str, body: dict[str, Any]) -> None:
        if kind == "status":
            self._print(vm, [("status", (f"QMP session {body['text']}",))])
            return
        model = MODELS.get(kind)
        if model is None or "text" in body:  # a topic not shown, or a cleared one
            return
        try:
            payload = model.model_validate(body)
        except ValidationError as exc:  # said, and the story goes on
            self.say(vm, f"{kind}: not a valid payload ({exc.error_count()} errors)")
            return
        before = self._models.get(f"{vm}/{kind}")
        self._models[f"{vm}/{kind}"] = payload
        self._print(vm, self._blocks(vm, payload, before))

    def _blocks(self, vm: str, payload: BaseModel, before: BaseModel | None
                ) -> list[lines.Block]:
        match payload:
            case TrackingPayload():
                assert before is None or isinstance(before, TrackingPayload)
                return lines.tracking_blocks(payload, before, vm in self.simulated)
            case BlockersPayload():
                return [lines.blockers_block(payload)]
            case InfoPayload():
                return [lines.info_block(payload)]
            case DirtyRatePayload() if payload.source == "calc-dirty-rate" and \
                    self._quiet_rate(vm):
                return [lines.dirty_rate_block(payload)]
            case ForecastPayload() if payload.applicable and payload.verdict != "unknown" \
                    and self._quiet_rate(vm):
                return [lines.forecast_block(payload)]
            case MigrationPayload():
                return [lines.migration_block(payload)]
            case PassPayload():
                return [lines.pass_block(payload)]
            case SummaryPayload():
                return [lines.summary_block(payload)]
            case EventPayload():
                return [(f"event {payload.event}", (
                    f"QEMU event {payload.event} {json.dumps(payload.data)}",))]
        return []

    def _quiet_rate(self, vm: str) -> bool:
        """The watched VM's guest runs here and no migration of it is under way."""
        info = self._models.get(f"{vm}/info")
        migration = self._models.get(f"{vm}/migration")
        return (vm == self.watched and isinstance(info, InfoPayload) and info.role == "running"
                and not (isinstance(migration, MigrationPayload)
                         and migration.status not in ENDED))

    def _print(self, vm: str, blocks: list[lines.Block]) -> None:
        for key, text in blocks:
            if self._printed.get((vm, key)) != text:
                self._printed[(vm, key)] = text
                for line in text:
                    self.say(vm, line)

    # --- waiting ------------------------------------------------------------------------

    def mark(self, key: str) -> int:
        """How many payloads ``vm/kind`` has had so far (``wait(after=...)``)."""
        with self.lock:
            return len(self.seen.get(key, []))

    def wait(self, key: str, timeout_s: float = 60, match: dict[str, Any] | None = None,
             after: int = 0) -> dict[str, Any]:
        """Block until a payload on ``vm/kind`` (matching ``match``) has arrived, the
        ``after``-th or a later one."""
        wanted: Callable[[dict[str, Any]], bool] = lambda b: all(  # noqa: E731
            b.get(k) == v for k, v in (match or {}).items())
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                found = [b for b in self.seen.get(key, [])[after:] if wanted(b)]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"demo: no {key} {match or ''} after {timeout_s:.0f}s")
                self.changed.wait(left)

    def wait_latest(self, key: str, timeout_s: float, match: dict[str, Any]) -> dict[str, Any]:
        """Block until the newest payload on ``vm/kind`` matches ``match`` (what is
        retained now, however it got there)."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                newest = (self.seen.get(key) or [{}])[-1]
                if all(newest.get(k) == v for k, v in match.items()):
                    return newest
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"demo: {key} is not {match} after {timeout_s:.0f}s")
                self.changed.wait(left)
