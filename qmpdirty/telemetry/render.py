"""Facts and decisions -> MQTT messages (pure core).

Stage: telemetry. Each function takes facts or tracker records plus ``seq`` and
``ts`` (the shell owns counters and the clock) and returns an ``Outgoing`` message
whose payload is validated by a ``schema`` model. No I/O.
"""

from __future__ import annotations

from typing import Literal

from qmpdirty.decisions.migration.errors import error_cause
from qmpdirty.decisions.migration.tracker import Migration, Outcome
from qmpdirty.facts.vm import DirtyRateMeasurement, MigrationSnapshot, QmpEvent, VmInfo
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.topics import TopicKind, Topics

__all__ = ["Outgoing", "VmStamp"]  # re-exported: the port type lives in telemetry.message


def _message(
    topic: str, kind: TopicKind, model: schema.Payload, expiry_s: int | None = None
) -> Outgoing:
    body = model.model_dump_json(by_alias=True).encode()
    return Outgoing(topic, body, kind.qos, kind.retain, True, expiry_s)


def vm_message(
    stamp: VmStamp, kind: TopicKind, model: schema.Payload, event: str | None = None,
    expiry_s: int | None = None,
) -> Outgoing:
    return _message(stamp.topics.vm_topic(stamp.vm, kind, event), kind, model, expiry_s)


def host_status(topics: Topics, online: bool) -> Outgoing:
    """``<prefix>/<host>/status``: ``online``/``offline`` (also the last will)."""
    kind = TopicKind.HOST_STATUS
    body = b"online" if online else b"offline"
    return Outgoing(topics.host_topic(kind), body, kind.qos, kind.retain, is_json=False)


VmState = Literal["online", "offline", "unresponsive", "error"]


def vm_status(topics: Topics, vm: str, online: bool) -> Outgoing:
    """``vm/<vm>/status``: whether the daemon has a QMP session to the VM."""
    return vm_state(topics, vm, "online" if online else "offline")


def vm_state(topics: Topics, vm: str, state: VmState) -> Outgoing:
    """``vm/<vm>/status``: ``online``, ``offline``, ``unresponsive`` (QEMU stopped
    answering: frozen or overloaded; the session is kept) or ``error`` (the peer broke
    the protocol; the reason is on ``vm/<vm>/error``)."""
    kind = TopicKind.VM_STATUS
    return Outgoing(topics.vm_topic(vm, kind), state.encode(), kind.qos, kind.retain,
                    is_json=False)


def vm_error(stamp: VmStamp, reason: str, qmp: str) -> Outgoing:
    """``vm/<vm>/error`` (retained): why the status is ``error``."""
    model = schema.VmErrorPayload.model_validate({**stamp.common(), "reason": reason,
                                                  "qmp": qmp})
    return vm_message(stamp, TopicKind.ERROR, model)


def cleared(topics: Topics, vm: str, kind: TopicKind) -> Outgoing:
    """An empty retained message: removes a retained topic from the broker."""
    return Outgoing(topics.vm_topic(vm, kind), b"", kind.qos, True, is_json=False)


def daemon_state(
    topics: Topics, seq: int, ts: float, *, version: str, started_ts: float, vms_online: int,
    vms_known: int, outbox: schema.OutboxStats, mqtt_connects: int,
) -> Outgoing:
    """``<prefix>/<host>/daemon``: the daemon's own counters."""
    model = schema.DaemonPayload(
        ts=ts, host=topics.host, seq=seq, version=version, started_ts=started_ts,
        vms_online=vms_online, vms_known=vms_known, outbox=outbox, mqtt_connects=mqtt_connects,
    )
    return _message(topics.host_topic(TopicKind.DAEMON), TopicKind.DAEMON, model)


def info(stamp: VmStamp, facts: VmInfo, qmp: str, pid: int | None) -> Outgoing:
    """``vm/<vm>/info``."""
    model = schema.InfoPayload.model_validate({
        **stamp.common(), "qemu_version": facts.qemu_version, "uuid": facts.uuid,
        "machine": facts.machine, "accel": facts.accel, "ram_bytes": facts.ram_bytes,
        "vcpus": facts.vcpus, "run_state": facts.run_state, "qmp": qmp, "pid": pid,
        "migration_events": facts.migration_events,
    })
    return vm_message(stamp, TopicKind.INFO, model)


def dirty_rate_measured(
    stamp: VmStamp, m: DirtyRateMeasurement, expiry_s: int | None, *,
    error_bound_rel: float | None = None, basis: str | None = None,
) -> Outgoing:
    """``vm/<vm>/dirty_rate`` from a ``calc-dirty-rate`` measurement."""
    vcpus = [schema.VcpuDirtyRate(id=i, bytes_per_s=r) for i, r in m.vcpu_bytes_per_s] or None
    model = schema.DirtyRatePayload.model_validate({
        **stamp.common(), "bytes_per_s": m.bytes_per_s, "mode": m.mode,
        "source": "calc-dirty-rate", "window_s": m.window_s, "sample_pages": m.sample_pages,
        "vcpus": vcpus, "error_bound_rel": error_bound_rel, "basis": basis,
    })
    return vm_message(stamp, TopicKind.DIRTY_RATE, model, expiry_s=expiry_s)


def dirty_rate_during_migration(
    stamp: VmStamp, bytes_per_s: float, window_s: float | None, expiry_s: int | None, *,
    source: str = "migration", basis: str | None = None,
) -> Outgoing:
    """``vm/<vm>/dirty_rate`` while migrating: QEMU's ``ram.dirty-pages-rate`` (source
    ``migration``) or, until QEMU has one, an estimate (source ``estimate``)."""
    model = schema.DirtyRatePayload.model_validate({
        **stamp.common(), "bytes_per_s": bytes_per_s, "mode": "migration",
        "source": source, "window_s": window_s, "basis": basis,
    })
    return vm_message(stamp, TopicKind.DIRTY_RATE, model, expiry_s=expiry_s)


def _progress(snap: MigrationSnapshot | None) -> dict[str, object]:
    s = snap or MigrationSnapshot(status=None)
    return {
        "transferred_bytes": s.transferred_bytes, "remaining_bytes": s.remaining_bytes,
        "total_bytes": s.total_bytes, "bandwidth_bytes_per_s": s.bandwidth_bytes_per_s,
        "dirty_bytes_per_s": s.dirty_bytes_per_s, "throttle_percent": s.throttle_percent,
        "vfio_transferred_bytes": s.vfio_transferred_bytes,
    }


def migration(stamp: VmStamp, m: Migration, forecast: schema.ForecastSummary | None = None,
              recommendations: list[schema.Recommendation] | None = None) -> Outgoing:
    """``vm/<vm>/migration`` (retained), with the forecast made at this poll."""
    snap = m.snapshot
    model = schema.MigrationPayload.model_validate({
        **stamp.common(), **_progress(snap), "id": m.id, "role": m.role, "status": m.status,
        "statuses": list(m.statuses), "pass": m.passes, "started_ts": m.started_ts,
        "elapsed_s": max(0.0, stamp.ts - m.started_ts),
        "expected_downtime_ms": snap.expected_downtime_ms if snap else None,
        "error": snap.error_desc if snap else None, "forecast": forecast,
        "recommendations": recommendations or [], "vfio_devices": dict(m.vfio_states),
    })
    return vm_message(stamp, TopicKind.MIGRATION, model)


def pass_record(stamp: VmStamp, m: Migration, pass_no: int, expiry_s: int | None) -> Outgoing:
    """``vm/<vm>/migration/pass`` (one per MIGRATION_PASS)."""
    snap = m.snapshot
    model = schema.PassPayload.model_validate({
        **stamp.common(), **_progress(snap), "id": m.id, "pass": pass_no,
        "elapsed_s": max(0.0, stamp.ts - m.started_ts),
        "dirty_sync_count": snap.dirty_sync_count if snap else None,
    })
    return vm_message(stamp, TopicKind.PASS, model, expiry_s=expiry_s)


def _cause(error_desc: str | None) -> schema.ErrorCausePayload | None:
    c = error_cause(error_desc)
    return schema.ErrorCausePayload(kind=c.kind, device=c.device, errno=c.errno) if c else None


def summary(stamp: VmStamp, m: Migration, outcome: Outcome, ended_ts: float) -> Outgoing:
    """``vm/<vm>/migration/summary`` (retained): the final record of one migration."""
    snap = m.snapshot or MigrationSnapshot(status=None)
    measured_ms = round((ended_ts - m.started_ts) * 1000)
    model = schema.SummaryPayload.model_validate({
        **stamp.common(), "id": m.id, "role": m.role, "outcome": outcome,
        "statuses": list(m.statuses), "started_ts": m.started_ts, "ended_ts": ended_ts,
        "total_time_ms": snap.total_time_ms if snap.total_time_ms is not None else measured_ms,
        "setup_time_ms": snap.setup_time_ms, "downtime_ms": snap.downtime_ms,
        "transferred_bytes": snap.transferred_bytes, "total_bytes": snap.total_bytes,
        "vfio_transferred_bytes": snap.vfio_transferred_bytes, "passes": m.passes,
        "peak_dirty_bytes_per_s": m.peak_dirty_bytes_per_s, "error": snap.error_desc,
        "error_cause": _cause(snap.error_desc), "vfio_devices": dict(m.vfio_states),
    })
    return vm_message(stamp, TopicKind.SUMMARY, model)


def event(stamp: VmStamp, ev: QmpEvent, expiry_s: int | None) -> Outgoing:
    """``vm/<vm>/event/<EVENT>`` for every QMP event."""
    model = schema.EventPayload.model_validate({
        **stamp.common(), "event": ev.name, "data": ev.data, "qemu_ts": ev.qemu_ts,
    })
    return vm_message(stamp, TopicKind.EVENT, model, event=ev.name, expiry_s=expiry_s)



def hook_result(stamp: VmStamp, event: str, command: tuple[str, ...],
                outcome: dict[str, object]) -> Outgoing:
    """``vm/<vm>/hook``: one failed hook run."""
    model = schema.HookResultPayload.model_validate({
        **stamp.common(), "event": event, "command": list(command),
        "exit_code": outcome.get("exit_code"), "timed_out": bool(outcome.get("timed_out")),
        "error": outcome.get("error"), "duration_s": outcome.get("duration_s", 0.0),
    })
    return vm_message(stamp, TopicKind.HOOK, model)
