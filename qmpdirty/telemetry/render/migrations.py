"""Migration tracker records -> ``migration``, ``migration/pass`` and
``migration/summary`` messages (pure core).

Stage: telemetry. Takes ``decisions.migration.tracker`` records, the forecast the
daemon made at this poll and, for the summary, the cause the daemon read from QEMU's
``error-desc`` (``decisions.migration.errors.error_cause``). It calls the payload
models with keywords. It must not decide anything (not even the cause) nor do I/O.
"""

from __future__ import annotations

from typing import TypedDict

from qmpdirty.decisions.migration.errors import ErrorCause
from qmpdirty.decisions.migration.tracker import Migration, Outcome
from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.topics import TopicKind


class ProgressFields(TypedDict):
    """What ``migration`` and ``migration/pass`` both take from ``query-migrate``."""

    transferred_bytes: int | None
    remaining_bytes: int | None
    total_bytes: int | None
    bandwidth_bytes_per_s: float | None
    dirty_bytes_per_s: float | None
    throttle_percent: int | None
    vfio_transferred_bytes: int | None


def _progress(snap: MigrationSnapshot | None) -> ProgressFields:
    s = snap or MigrationSnapshot(status=None)
    return ProgressFields(
        transferred_bytes=s.transferred_bytes, remaining_bytes=s.remaining_bytes,
        total_bytes=s.total_bytes, bandwidth_bytes_per_s=s.bandwidth_bytes_per_s,
        dirty_bytes_per_s=s.dirty_bytes_per_s, throttle_percent=s.throttle_percent,
        vfio_transferred_bytes=s.vfio_transferred_bytes,
    )


def migration(stamp: VmStamp, m: Migration, *, uuid: str | None,
              forecast: schema.ForecastSummary | None = None,
              recommendations: list[schema.Recommendation] | None = None) -> Outgoing:
    """``vm/<vm>/migration`` (retained), with the forecast made at this poll."""
    snap = m.snapshot
    model = schema.MigrationPayload(
        **stamp.common(), **_progress(snap), id=m.id, uuid=uuid, role=m.role,
        status=m.status, statuses=list(m.statuses), pass_=m.passes, started_ts=m.started_ts,
        elapsed_s=max(0.0, stamp.ts - m.started_ts),
        expected_downtime_ms=snap.expected_downtime_ms if snap else None,
        error=snap.error_desc if snap else None, forecast=forecast,
        recommendations=recommendations or [], vfio_devices=dict(m.vfio_states),
    )
    return vm_message(stamp, TopicKind.MIGRATION, model)


def pass_record(stamp: VmStamp, m: Migration, pass_no: int, expiry_s: int | None, *,
                uuid: str | None) -> Outgoing:
    """``vm/<vm>/migration/pass`` (one per MIGRATION_PASS)."""
    snap = m.snapshot
    model = schema.PassPayload(
        **stamp.common(), **_progress(snap), id=m.id, uuid=uuid, pass_=pass_no,
        elapsed_s=max(0.0, stamp.ts - m.started_ts),
        dirty_sync_count=snap.dirty_sync_count if snap else None,
    )
    return vm_message(stamp, TopicKind.PASS, model, expiry_s=expiry_s)


def summary(stamp: VmStamp, m: Migration, outcome: Outcome, ended_ts: float,
            cause: ErrorCause | None, *, uuid: str | None) -> Outgoing:
    """``vm/<vm>/migration/summary`` (retained): the final record of one migration;
    ``cause`` is what the caller read from QEMU's ``error-desc`` (None: none known)."""
    snap = m.snapshot or MigrationSnapshot(status=None)
    measured_ms = round((ended_ts - m.started_ts) * 1000)
    model = schema.SummaryPayload(
        **stamp.common(), id=m.id, uuid=uuid, role=m.role, outcome=outcome,
        statuses=list(m.statuses),
        started_ts=m.started_ts, ended_ts=ended_ts,
        total_time_ms=snap.total_time_ms if snap.total_time_ms is not None else measured_ms,
        setup_time_ms=snap.setup_time_ms, downtime_ms=snap.downtime_ms,
        transferred_bytes=snap.transferred_bytes, total_bytes=snap.total_bytes,
        vfio_transferred_bytes=snap.vfio_transferred_bytes, passes=m.passes,
        peak_dirty_bytes_per_s=m.peak_dirty_bytes_per_s, error=snap.error_desc,
        error_cause=schema.ErrorCausePayload(kind=cause.kind, device=cause.device,
                                             errno=cause.errno) if cause else None,
        vfio_devices=dict(m.vfio_states),
    )
    return vm_message(stamp, TopicKind.SUMMARY, model)
