"""Rendering a migration and its forecast (telemetry/render/ + schema.py): the migration,
its passes and its summary from tracker records, and what a forecast may claim.
"""

from __future__ import annotations

import pytest

from qmpdirty.decisions.migration.claim import BlockerState, claim
from qmpdirty.decisions.migration.errors import ErrorCause, cause_of, error_cause
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.migration.forecast import Forecast
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.decisions.migration.uncertainty import Outlook, outlook
from qmpdirty.decisions.role import role_of
from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.qmp.translate import migration_snapshot_from
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import forecast as fc
from qmpdirty.telemetry.render import migrations
from tests.support.recorded_replies import load
from tests.support.render_inputs import (
    ACTIVE,
    FC_IN,
    MIGRATION,
    RUNNING,
    STAMP,
    STARTED,
    TS,
    UUID,
    VM,
    body,
)

COMPLETED = migration_snapshot_from(load("query-migrate.completed.json"))
FAILED = migration_snapshot_from(load("query-migrate.failed.json"))


def test_migration_payload_from_a_recorded_snapshot() -> None:
    data = body(render.migration(STAMP, MIGRATION, uuid=UUID))
    raw = load("query-migrate.active-4.json")
    assert data["id"] == MIGRATION.id
    assert data["uuid"] == UUID
    assert data["role"] == "source"
    assert data["status"] == "active"
    assert data["statuses"] == ["setup", "active"]
    assert data["pass"] == 2
    assert data["started_ts"] == STARTED
    assert data["elapsed_s"] == 3.5
    assert data["transferred_bytes"] == raw["ram"]["transferred"]
    assert data["remaining_bytes"] == raw["ram"]["remaining"]
    assert data["total_bytes"] == raw["ram"]["total"]
    assert data["bandwidth_bytes_per_s"] == pytest.approx(raw["ram"]["mbps"] * 125_000)
    assert data["dirty_bytes_per_s"] == raw["ram"]["dirty-pages-rate"] * 4096
    assert data["expected_downtime_ms"] == raw["expected-downtime"]
    assert data["vfio_transferred_bytes"] is None
    assert data["error"] is None


def test_migration_payload_without_a_snapshot_and_a_clock_behind() -> None:
    m = Migration(id="x", role="destination", started_ts=TS + 10, status="setup",
                  statuses=("setup",))
    data = body(render.migration(STAMP, m, uuid=None))
    assert data["elapsed_s"] == 0.0
    assert data["transferred_bytes"] is None
    assert data["dirty_bytes_per_s"] is None
    assert data["expected_downtime_ms"] is None
    assert data["role"] == "destination"


def test_pass_record_payload() -> None:
    msg = render.pass_record(STAMP, MIGRATION, 2, 3600, uuid=UUID)
    data = body(msg)
    assert data["pass"] == 2
    assert data["uuid"] == UUID
    assert data["id"] == MIGRATION.id
    assert data["dirty_sync_count"] == ACTIVE.dirty_sync_count
    assert data["elapsed_s"] == 3.5
    assert msg.expiry_s == 3600
    assert not msg.retain


def test_summary_uses_qemus_total_time() -> None:
    done = Migration(id="m", role="source", started_ts=STARTED, status="completed",
                     statuses=("setup", "active", "device", "completed"), passes=4,
                     snapshot=COMPLETED, peak_dirty_bytes_per_s=16e6)
    data = body(render.summary(STAMP, done, "completed", STARTED + 10, cause_of(done),
                               uuid=UUID))
    raw = load("query-migrate.completed.json")
    assert data["uuid"] == UUID
    assert data["total_time_ms"] == raw["total-time"]
    assert data["downtime_ms"] == raw["downtime"]
    assert data["setup_time_ms"] == raw["setup-time"]
    assert data["transferred_bytes"] == raw["ram"]["transferred"]
    assert data["total_bytes"] == raw["ram"]["total"]
    assert data["outcome"] == "completed"
    assert data["passes"] == 4
    assert data["peak_dirty_bytes_per_s"] == 16e6
    assert data["statuses"] == ["setup", "active", "device", "completed"]
    assert (data["started_ts"], data["ended_ts"]) == (STARTED, STARTED + 10)
    assert data["error"] is None


@pytest.mark.parametrize(
    ("snapshot", "outcome"),
    [(None, "lost"), (FAILED, "failed"), (MigrationSnapshot(status="cancelled"), "cancelled")],
)
def test_summary_falls_back_to_the_measured_total_time(
    snapshot: MigrationSnapshot | None, outcome: str
) -> None:
    m = Migration(id="m", role="source", started_ts=STARTED, status="active",
                  statuses=("setup", "active"), snapshot=snapshot)
    msg = render.summary(STAMP, m, outcome, STARTED + 2.3456, cause_of(m),  # type: ignore[arg-type]
                         uuid=None)
    data = body(msg)
    assert data["total_time_ms"] == 2346
    assert data["outcome"] == outcome
    assert data["peak_dirty_bytes_per_s"] is None
    assert data["error"] == (FAILED.error_desc if snapshot is FAILED else None)
    assert msg.topic == f"{VM}/migration/summary" and msg.retain


def test_summary_renders_the_cause_it_is_given() -> None:
    """The renderer decides nothing: the cause comes from the caller, which reads it
    from QEMU's ``error-desc`` (``cause_of``)."""
    failed = Migration(id="m", role="source", started_ts=STARTED, status="failed",
                       statuses=("setup", "failed"), snapshot=FAILED)
    cause = ErrorCause("network", None, "ECONNRESET", "x")
    data = body(migrations.summary(STAMP, failed, "failed", TS, cause, uuid=None))
    assert data["error_cause"] == {"kind": "network", "device": None, "errno": "ECONNRESET"}
    assert body(migrations.summary(STAMP, failed, "failed", TS, None, uuid=None)
                )["error_cause"] is None
    assert cause_of(failed) == error_cause(FAILED.error_desc)


# --- the forecast: what it may claim -----------------------------------------------------


def test_forecast_of_a_running_vm_carries_the_models_verdict() -> None:
    data = body(fc.forecast(STAMP, FC_IN, claim(RUNNING, BlockerState(True), outlook(FC_IN),
                                                ()), bandwidth_source="configured", dirty=None))
    assert (data["verdict"], data["applicable"], data["reason"], data["blockers"]) == (
        "converges", True, None, [])
    assert data["converges"] is True and data["eta_s"] is not None
    assert data["remaining_bytes"] == 10**9


def test_a_blocked_vm_never_converges_and_names_its_blockers() -> None:
    vvfat = "The vvfat (rw) format used by node '#block080' does not support live migration"
    c = claim(RUNNING, BlockerState(False, (vvfat,)), outlook(FC_IN), ())
    data = body(fc.forecast(STAMP, FC_IN, c, bandwidth_source="configured", dirty=None))
    assert (data["verdict"], data["applicable"], data["blockers"]) == ("blocked", True, [vvfat])
    assert data["reason"] == f"QEMU refuses to migrate it: {vvfat}"
    assert (data["converges"], data["eta_s"], data["downtime_ms"], data["passes"]) == (
        None, None, None, None)
    assert data["recommendations"] == []


@pytest.mark.parametrize(("run_state", "why"), [
    ("inmigrate", "waiting for an incoming migration"), ("paused", "the guest is paused"),
    ("postmigrate", "migrated away: the guest now runs on the destination")])
def test_a_vm_that_is_not_running_has_no_forecast(run_state: str, why: str) -> None:
    dirty = DirtyEstimate(1e7, "calc-dirty-rate", "page-sampling", "page-sampling, 1 s")
    c = claim(role_of(run_state, None), BlockerState(True), outlook(FC_IN), ())
    data = body(fc.forecast(STAMP, FC_IN, c, bandwidth_source="configured", dirty=dirty))
    assert (data["verdict"], data["applicable"], data["reason"]) == (
        "not-applicable", False, why)
    assert (data["converges"], data["eta_s"], data["dirty_bytes_per_s"],
            data["dirty_source"], data["remaining_bytes"]) == (None, None, None, None, None)
    assert data["notes"] == []


def test_forecast_inside_migration_counts_passes_in_total_and_remaining() -> None:
    summary = fc.summary(Outlook.single(Forecast(True, 5.0, 100.0, 3)), passes_done=4)
    assert (summary.passes, summary.passes_remaining) == (7, 3)
    unknown = fc.summary(Outlook.single(Forecast(None, None, None, None)), passes_done=4)
    assert (unknown.passes, unknown.passes_remaining) == (None, None)
