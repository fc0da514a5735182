"""A fake QEMU 10.0.2 that answers with a real one's recorded replies (the fake fleet's VMs).

``RecordedVm`` is a responder of the lab's fake QMP core (``fakeqmp``): it answers
every command the daemon sends with what a real QEMU 10.0.2 answered
(``data/qemu-10.0.2.json``, recorded by ``bench/record_qmp.py``), pre-encoded once
for all VMs. Only what differs between VMs or over time is its own: the name
(``vm-<i>``) and uuid, the run state, the ``events`` migration capability, the
migration (``query-migrate`` from recorded snapshots, live counters) and the dirty-rate
measurement (``calc-dirty-rate`` / ``query-dirty-rate``, the recorded reply with a rate
near the VM's own and QEMU's "already being measured" error). The replies are QEMU's
own, so their shapes are faithful by construction; the wire is ``qmpwire``'s.
``bench/fleet.py`` runs a thousand of them; the demo may run a few. Must not: invent
a reply shape; what was not recorded gets the error QEMU gives for it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab import qmpwire
from qmpdirty.demo.lab.fakeqmp import Command, Encoded, QmpServer
from qmpdirty.demo.lab.qmpwire import ErrorReply

DATA = Path(__file__).resolve().parent / "data" / "qemu-10.0.2.json"
ALREADY_MEASURING = "the dirty rate is already being measured."
MTREE = "info mtree -f -o"


class Recording:
    """The recorded replies, each pre-encoded as a ``"return": ...`` (or error) member."""

    def __init__(self, path: Path = DATA) -> None:
        doc = json.loads(path.read_text())
        self.replies: dict[str, dict[str, Any]] = doc["replies"]
        self.encoded = {label: Encoded(self._member(reply))
                        for label, reply in self.replies.items()}
        self.snapshots: list[dict[str, Any]] = doc["migration_snapshots"]
        self.version: dict[str, Any] = self.replies["query-version"]["return"]

    @staticmethod
    def _member(reply: dict[str, Any]) -> str:
        if "error" in reply:
            return ErrorReply(reply["error"]["class"], reply["error"]["desc"]).member()
        return qmpwire.return_member(reply["return"])

    def greeting(self) -> dict[str, Any]:
        return qmpwire.greeting(self.version)

    def active_snapshot(self, progress: float, passes: int, elapsed_ms: int) -> dict[str, Any]:
        """A recorded ``active`` reply for ``progress`` in [0, 1], with live counters."""
        active = [s for s in self.snapshots if s.get("status") == "active"]
        snap: dict[str, Any] = json.loads(
            json.dumps(active[min(len(active) - 1, int(progress * len(active)))]))
        snap["total-time"] = elapsed_ms
        snap["ram"]["dirty-sync-count"] = passes
        return snap


class RecordedVm:
    """One fake QEMU: its state, its QMP server (``qmp``) and its answers."""

    def __init__(self, index: int, rec: Recording, commands: Counter[str] | None = None
                 ) -> None:
        self.rec = rec
        self.name = f"vm-{index}"
        self.run_state = "running"
        self.events_on = False
        self.migration: dict[str, Any] | None = None
        self.transitions: list[tuple[str, float]] = []
        self.dirty: tuple[float, dict[str, Any]] | None = None  # (ends_at, reply)
        self.base_rate_mib = random.choice((4, 8, 16, 32, 64))
        self.identity = {
            "query-name": Encoded(qmpwire.return_member({"name": self.name})),
            "query-uuid": Encoded(qmpwire.return_member(
                {"UUID": str(uuid.UUID(int=index + 1))})),
        }
        self.commands = Counter[str]() if commands is None else commands
        self.qmp = QmpServer(self, name=self.name, on_message=self._count)

    @property
    def clients(self) -> int:
        """How many monitors are connected."""
        return len(self.qmp.connections)

    def emit(self, event: str, data: dict[str, Any] | None = None) -> float:
        """Send ``event`` to every connected monitor; returns its QEMU timestamp."""
        return self.qmp.emit(event, data)

    def greeting(self) -> object:
        return self.rec.greeting()

    def answer(self, command: Command) -> object:
        name, args = command.name, command.arguments
        if name in self.identity:
            return self.identity[name]
        if name == "query-status":
            return self.rec.encoded[f"query-status:{self.run_state}"]
        if name == "query-migrate-capabilities":
            return self.rec.encoded["query-migrate-capabilities" +
                                    (":events-on" if self.events_on else "")]
        if name == "migrate-set-capabilities":
            for cap in args.get("capabilities", []):
                if cap.get("capability") == "events":
                    self.events_on = bool(cap.get("state"))
            return {}
        if name == "query-migrate":
            return self.migration if self.migration is not None \
                else self.rec.encoded["query-migrate"]
        if name in ("calc-dirty-rate", "query-dirty-rate"):
            return self._dirty_rate(name, args)
        label = {"qom-get": f"qom-get:{args.get('path')}:{args.get('property')}",
                 "qom-list": f"qom-list:{args.get('path')}",
                 "human-monitor-command": "mtree" if args.get("command-line") == MTREE
                 else "hmp"}.get(name, name)
        if label in self.rec.encoded:
            return self.rec.encoded[label]
        if name == "qom-list":
            raise ErrorReply("DeviceNotFound", f"Device '{args.get('path')}' not found")
        if name == "qom-get":
            raise ErrorReply("GenericError", f"Property '{args.get('property')}' not found")
        raise qmpwire.not_found(name)

    def _dirty_rate(self, command: str, args: dict[str, Any]) -> object:
        now = time.time()
        if command == "calc-dirty-rate":
            if self.dirty is not None and now < self.dirty[0]:
                raise ErrorReply("GenericError", ALREADY_MEASURING)
            unit_ms = args.get("calc-time-unit") == "millisecond"
            calc = int(args.get("calc-time", 1))
            reply = dict(self.rec.replies["query-dirty-rate:measured"]["return"])
            reply.update({"calc-time": calc, "start-time": int(now), "mode": args.get("mode"),
                          "sample-pages": args.get("sample-pages", 0),
                          "dirty-rate": max(1, round(self.base_rate_mib * random.uniform(
                              0.8, 1.2)))})
            self.dirty = (now + (calc / 1000 if unit_ms else calc), reply)
            return {}
        if self.dirty is None:
            return self.rec.encoded["query-dirty-rate"]
        ends_at, reply = self.dirty
        if now < ends_at:
            return {k: v for k, v in reply.items() if k != "dirty-rate"} | {"status": "measuring"}
        return reply

    def _count(self, message: object) -> None:
        name = message.get("execute") if isinstance(message, dict) else None
        self.commands[str(name)] += 1
