"""QMP events -> typed observations: each event read once, at the boundary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.facts.events import (
    DeviceStateSeen,
    EventObservation,
    MigrationPassSeen,
    MigrationStatusSeen,
    OtherEvent,
    RunStateChanged,
    TopologyChanged,
)
from qmpdirty.facts.vm import QmpEvent
from qmpdirty.qmp.translate import event_from, observation_from

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2"


def test_recorded_events_of_three_real_migrations() -> None:
    """QEMU 10.0.2's own events: one failed, one cancelled, one completed migration."""
    seen = [observation_from(event_from(json.loads(p.read_text())))
            for p in sorted(RECORDED.glob("event.*.json"))]
    status, passed = MigrationStatusSeen, MigrationPassSeen
    assert seen == [
        RunStateChanged("RESUME"),
        status("setup"), passed(1), status("active"), status("failed"),
        status("setup"), passed(1), status("active"), status("cancelling"), status("cancelled"),
        status("setup"), passed(1), status("active"), passed(2), passed(3),
        RunStateChanged("STOP"), status("device"), passed(4), status("completed"),
    ]


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("MIGRATION", {"status": "postcopy-active"}, MigrationStatusSeen("postcopy-active")),
    ("MIGRATION", {}, MigrationStatusSeen(None)),
    ("MIGRATION", {"status": 3}, MigrationStatusSeen(None)),
    ("MIGRATION_PASS", {"pass": 7}, MigrationPassSeen(7)),
    ("MIGRATION_PASS", {"pass": "7"}, OtherEvent("MIGRATION_PASS")),
    ("VFIO_MIGRATION", {"device-id": "h0", "qom-path": "/machine/peripheral/h0",
                        "device-state": "stop-copy"},
     DeviceStateSeen("/machine/peripheral/h0", "stop-copy")),
    ("VFIO_MIGRATION", {"device-id": "h0", "device-state": "running"},
     DeviceStateSeen("h0", "running")),
    ("VFIO_MIGRATION", {"device-id": "h0"}, OtherEvent("VFIO_MIGRATION")),
    ("STOP", {}, RunStateChanged("STOP")),
    ("GUEST_PANICKED", {"action": "pause"}, RunStateChanged("GUEST_PANICKED")),
    ("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}, RunStateChanged("SHUTDOWN")),
    ("DEVICE_DELETED", {"path": "/machine/peripheral/h0"}, TopologyChanged("DEVICE_DELETED")),
    ("MEMORY_DEVICE_SIZE_CHANGE", {"size": 1}, TopologyChanged("MEMORY_DEVICE_SIZE_CHANGE")),
    ("DEVICE_ADDED", {}, TopologyChanged("DEVICE_ADDED")),
    ("BLOCK_JOB_READY", {"device": "d0"}, OtherEvent("BLOCK_JOB_READY")),
    ("migration", {"status": "setup"}, OtherEvent("migration")),
])
def test_observation_of_each_kind(name: str, data: dict[str, Any],
                                  expected: EventObservation) -> None:
    assert observation_from(QmpEvent(name, data)) == expected
