"""What the render tests render: a stamp, a VM's info, a migration from the QEMU 10.0.2
recording, a measurement, an event, a VM without VFIO and forecast inputs (the payload
contract, the per-VM payloads, the migration payloads and ``qmpdirty probe``'s report)."""

from __future__ import annotations

import json
from typing import Any

from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.migration.forecast import ForecastInputs
from qmpdirty.decisions.migration.tracker import Migration, migration_id
from qmpdirty.decisions.role import role_of
from qmpdirty.decisions.vfio.evaluate import evaluate
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology
from qmpdirty.facts.vm import DirtyRateMeasurement, VmBasics, VmInfo
from qmpdirty.qmp.translate import event_from, migration_snapshot_from
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.topics import Topics
from tests.support.recorded_replies import RECORDED, load

RUNNING = role_of("running", None)
UUID = "8f3c1a52-7d54-4f6e-9b1a-2c3d4e5f6a7b"
QEMU_RATE = DirtyEstimate(1.5e6, "migration", "migration-bitmap",
                          "ram.dirty-pages-rate x page-size")
TOPICS = Topics.create("qmpdirty", "kvm01")
STARTED = 1_795_271_512.0
TS = STARTED + 3.5
STAMP = VmStamp(TOPICS, "web1", 7, TS)
VM = "qmpdirty/kvm01/vm/web1"

ACTIVE = migration_snapshot_from(load("query-migrate.active-4.json"))
MIGRATION = Migration(
    id=migration_id(STARTED), role="source", started_ts=STARTED, status="active",
    statuses=("setup", "active"), passes=2, snapshot=ACTIVE,
    peak_dirty_bytes_per_s=ACTIVE.dirty_bytes_per_s,
)
INFO = VmInfo(
    basics=VmBasics((10, 0, 2), "pc-i440fx-10.0", base_ram_bytes=96 << 20,
                    plugged_ram_bytes=32 << 20),
    uuid=None, accel="tcg", vcpus=1, run_state="running", migration_events=True,
)
MEASURED = DirtyRateMeasurement(bytes_per_s=60.0 * 2**20, mode="page-sampling", window_s=0.5,
                                sample_pages=512, started_at_s=STARTED, vcpu_bytes_per_s=())
EVENT = event_from(next(json.loads(p.read_text()) for p in sorted(RECORDED.glob("event.*.json"))
                        if "MIGRATION_PASS" in p.name))


def body(msg: Outgoing) -> dict[str, Any]:
    assert msg.is_json
    data: dict[str, Any] = json.loads(msg.payload)
    return data


#: A VM without VFIO devices, evaluated.
Q35 = VmBasics((10, 0, 2), "pc-q35-10.0", 2**30)
NO_VFIO = evaluate(VmTopology(Q35), HostFacts())
FC_IN = ForecastInputs(bandwidth_bytes_per_s=1e8, dirty_bytes_per_s=1e7, remaining_bytes=10**9,
                       downtime_limit_ms=300)
