"""Representative messages of one host (a VM with a VFIO device, migrating), as the
daemon publishes them: what the Prometheus tests feed ``telemetry.metrics``."""

from __future__ import annotations

from typing import Any

from qmpdirty.telemetry import render, schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.topics import TopicKind, Topics

TOPICS = Topics.create("qmpdirty", "kvm01")
VM = "web1"
GPU = "/machine/peripheral/gpu0"


def _stamp(seq: int) -> VmStamp:
    return VmStamp(TOPICS, VM, seq, 1_800_000_000.0 + seq)


def _vm(kind: TopicKind, model: type[schema.VmPayload], seq: int, /, **fields: Any
        ) -> Outgoing:
    data = {**_stamp(seq).common(), **fields}
    return vm_message(_stamp(seq), kind, model.model_validate(data))


INFO = _vm(TopicKind.INFO, schema.InfoPayload, 1, qemu_version="10.0.2", uuid=None,
           machine="pc-q35-10.0", accel="kvm", ram_bytes=2 << 30, vcpus=2,
           run_state="running", role="running", role_reason="the guest runs",
           qmp="unix:/run/web1.qmp", migration_events=True)
BLOCKERS = _vm(TopicKind.BLOCKERS, schema.BlockersPayload, 2, migratable=False, predicted=[],
               observed=["VFIO device doesn't support migration"], agree=None, missing=[],
               unexpected=[], unmodelled=[])
DIRTY = _vm(TopicKind.DIRTY_RATE, schema.DirtyRatePayload, 3, bytes_per_s=5e6,
            mode="page-sampling", source="calc-dirty-rate", window_s=1.0)
FORECAST = _vm(TopicKind.FORECAST, schema.ForecastPayload, 4, verdict="converges",
               applicable=True, reason=None, blockers=[], converges=True, eta_s=12.5,
               downtime_ms=30.0, passes=3, bandwidth_bytes_per_s=1e9,
               bandwidth_source="configured", dirty_bytes_per_s=5e6,
               dirty_source="calc-dirty-rate", downtime_limit_ms=300.0,
               remaining_bytes=2 << 30, vfio_bytes=None, recommendations=[],
               model="precopy-geometric", notes=[])
MIGRATION = _vm(TopicKind.MIGRATION, schema.MigrationPayload, 5, id="m1", uuid=None,
                role="source", status="active", statuses=["setup", "active"],
                **{"pass": 2}, started_ts=1_800_000_000.0, elapsed_s=4.0,
                transferred_bytes=1 << 30, remaining_bytes=1 << 20, total_bytes=2 << 30,
                bandwidth_bytes_per_s=2.5e8, dirty_bytes_per_s=None, vfio_transferred_bytes=None,
                expected_downtime_ms=120, throttle_percent=None, error=None)
TRACKING = _vm(TopicKind.TRACKING, schema.TrackingPayload, 6, qemu_version="10.0.2",
               devices=[{"id": "gpu0", "qom_path": GPU, "qom_type": "vfio-pci",
                         "host_bdf": "0000:3b:00.1", "name": "0000:3b:00.1",
                         "driver": "mlx5_vfio_pci", "backend": "iommufd",
                         "container": "c0", "mode": "device", "reasons": []}],
               containers=[{"id": "c0", "backend": "iommufd", "mode": "device",
                            "devices": [GPU], "reasons": [], "ranges": [], "fits": True,
                            "limits": [], "optimal_ranges": None}],
               realize_errors=[], complete=True)
DAEMON = render.daemon_state(TOPICS, 1, 1_800_000_000.0, version="0.1.0",
                             started_ts=1_799_999_000.0, vms_online=1, vms_known=1,
                             outbox=schema.OutboxStats(capacity=10_000, queued=3,
                                                       dropped_total=7,
                                                       dropped_by_vm={VM: 7}),
                             qmp_events=schema.QmpEventStats(dropped_total=5,
                                                             dropped_by_vm={VM: 5},
                                                             unreadable_total=2,
                                                             unreadable_by_vm={VM: 2}),
                             mqtt_connects=2)
ONLINE = render.vm_state(TOPICS, VM, "online")

#: Everything a host sends that feeds a metric.
ALL = [DAEMON, ONLINE, INFO, BLOCKERS, DIRTY, FORECAST, MIGRATION, TRACKING]
