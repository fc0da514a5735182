"""Rendering facts and tracker records into MQTT messages (telemetry/render/ + schema.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qmpdirty.config.hooks import qmp_hook_event
from qmpdirty.decisions.migration.claim import BlockerState, claim
from qmpdirty.decisions.migration.errors import ErrorCause, cause_of, error_cause
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.migration.forecast import Forecast, ForecastInputs
from qmpdirty.decisions.migration.tracker import Migration, migration_id
from qmpdirty.decisions.migration.uncertainty import Outlook, outlook
from qmpdirty.decisions.role import role_of
from qmpdirty.decisions.vfio.disagreement import UNSEEN
from qmpdirty.decisions.vfio.evaluate import VfioVerdict, evaluate
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology
from qmpdirty.facts.vm import (
    DirtyRateMeasurement,
    MigrationSnapshot,
    QmpEvent,
    VmBasics,
    VmInfo,
)
from qmpdirty.qmp.translate import event_from, migration_snapshot_from
from qmpdirty.sinks.hooks import outcome
from qmpdirty.telemetry import render, schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render import forecast as fc
from qmpdirty.telemetry.render import migrations, vfio
from qmpdirty.telemetry.topics import TopicKind, Topics

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2"
RUNNING = role_of("running", None)
UUID = "8f3c1a52-7d54-4f6e-9b1a-2c3d4e5f6a7b"
QEMU_RATE = DirtyEstimate(1.5e6, "migration", "migration-bitmap",
                          "ram.dirty-pages-rate x page-size")
TOPICS = Topics.create("qmpdirty", "kvm01")
STARTED = 1_795_271_512.0
TS = STARTED + 3.5
STAMP = VmStamp(TOPICS, "web1", 7, TS)
VM = "qmpdirty/kvm01/vm/web1"


def load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


ACTIVE = migration_snapshot_from(load("query-migrate.active-4.json"))
COMPLETED = migration_snapshot_from(load("query-migrate.completed.json"))
FAILED = migration_snapshot_from(load("query-migrate.failed.json"))

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


# (id, render call, topic, kind, payload model)
Q35 = VmBasics((10, 0, 2), "pc-q35-10.0", 2**30)
NO_VFIO = evaluate(VmTopology(Q35), HostFacts())


def observed_only(observed: tuple[str, ...]) -> VfioVerdict:
    """An evaluation of a VM without VFIO devices whose QEMU reports ``observed``."""
    return evaluate(VmTopology(Q35, blocked_reasons=observed),
                    HostFacts())
FC_IN = ForecastInputs(bandwidth_bytes_per_s=1e8, dirty_bytes_per_s=1e7, remaining_bytes=10**9,
                       downtime_limit_ms=300)

JSON_CASES: list[tuple[str, Callable[[], Outgoing], str, TopicKind, type[schema.Payload]]] = [
    ("info", lambda: render.info(STAMP, INFO, RUNNING, "unix:/run/q.sock", 4242), f"{VM}/info",
     TopicKind.INFO, schema.InfoPayload),
    ("dirty_rate_measured", lambda: render.dirty_rate_measured(STAMP, MEASURED, 120),
     f"{VM}/dirty_rate", TopicKind.DIRTY_RATE, schema.DirtyRatePayload),
    ("dirty_rate_during_migration",
     lambda: render.dirty_rate_during_migration(STAMP, QEMU_RATE, 60), f"{VM}/dirty_rate",
     TopicKind.DIRTY_RATE, schema.DirtyRatePayload),
    ("migration", lambda: render.migration(STAMP, MIGRATION, uuid=UUID), f"{VM}/migration",
     TopicKind.MIGRATION, schema.MigrationPayload),
    ("pass_record", lambda: render.pass_record(STAMP, MIGRATION, 2, 3600, uuid=UUID),
     f"{VM}/migration/pass", TopicKind.PASS, schema.PassPayload),
    ("summary", lambda: render.summary(STAMP, MIGRATION, "completed", TS, None, uuid=UUID),
     f"{VM}/migration/summary", TopicKind.SUMMARY, schema.SummaryPayload),
    ("hook", lambda: render.hook_result(STAMP, outcome(
        "vm-online", ("/bin/x",), exit_code=3, timed_out=False, error="exit status 3",
        duration_s=0.1)),
     f"{VM}/hook", TopicKind.HOOK, schema.HookResultPayload),
    ("hook qmp", lambda: render.hook_result(STAMP, outcome(
        qmp_hook_event("GUEST_PANICKED"), ("/bin/x",), exit_code=None, timed_out=False,
        error="executable not found: /bin/x", duration_s=0.0)),
     f"{VM}/hook", TopicKind.HOOK, schema.HookResultPayload),
    ("error", lambda: render.vm_error(STAMP, "message larger than 10 MiB", "unix:/q"),
     f"{VM}/error", TopicKind.ERROR, schema.VmErrorPayload),
    ("event", lambda: render.event(STAMP, EVENT, 3600), f"{VM}/event/MIGRATION_PASS",
     TopicKind.EVENT, schema.EventPayload),
    ("tracking", lambda: vfio.tracking(STAMP, NO_VFIO), f"{VM}/tracking",
     TopicKind.TRACKING, schema.TrackingPayload),
    ("blockers", lambda: vfio.blockers(STAMP, NO_VFIO), f"{VM}/blockers",
     TopicKind.BLOCKERS, schema.BlockersPayload),
    ("forecast", lambda: fc.forecast(STAMP, FC_IN, claim(RUNNING, None, outlook(FC_IN), ()),
                                     bandwidth_source="configured", dirty=None),
     f"{VM}/forecast", TopicKind.FORECAST,
     schema.ForecastPayload),
]


@pytest.mark.parametrize(("make", "topic", "kind", "model"), [c[1:] for c in JSON_CASES],
                         ids=[c[0] for c in JSON_CASES])
def test_vm_payloads_validate_and_carry_the_common_fields(
    make: Callable[[], Outgoing], topic: str, kind: TopicKind, model: type[schema.Payload]
) -> None:
    msg = make()
    assert msg.topic == topic
    assert (msg.retain, msg.qos) == (kind.retain, kind.qos)
    assert msg.is_json
    data = body(msg)
    assert data["schema"] == schema.SCHEMA_VERSION == 1
    assert data["ts"] == TS and isinstance(data["ts"], float)
    assert data["host"] == "kvm01"
    assert data["vm"] == "web1"
    assert data["seq"] == 7
    assert msg.vm == "web1"  # the sink keeps each VM's messages in order, in the VM's lane
    parsed = model.model_validate_json(msg.payload)
    assert json.loads(parsed.model_dump_json(by_alias=True)) == data
    assert not any(k.endswith("_") for k in data), "pydantic field names leaked (pass_/schema_)"


def test_the_payload_models_are_the_published_ones() -> None:
    published = {m for _, _, _, _, m in JSON_CASES} | {schema.DaemonPayload}
    assert published == set(schema.PAYLOADS.values())


def test_json_schemas_use_the_wire_names() -> None:
    schemas = schema.json_schemas()
    assert "pass" in schemas["migration"]["properties"]
    assert "schema" in schemas["migration.summary"]["properties"]
    assert "pass_" not in schemas["migration.pass"]["properties"]


# --- per payload ---------------------------------------------------------------------------


def hook_data() -> dict[str, Any]:
    return body(render.hook_result(STAMP, outcome(
        "vm-online", ("/bin/x",), exit_code=1, timed_out=False, error="exit status 1",
        duration_s=0.5)))


@pytest.mark.parametrize("event", ["vm-online", "qmp:GUEST_PANICKED"])
def test_hook_event_is_a_kind_or_a_qmp_event(event: str) -> None:
    data = hook_data()
    assert schema.HookResultPayload.model_validate({**data, "event": event}).event == event


@pytest.mark.parametrize("event", ["*", "migration", "qmp:", "qmp:guest_panicked",
                                   "QMP:STOP", "GUEST_PANICKED"])
def test_hook_event_refuses_what_no_hook_runs_for(event: str) -> None:
    data = hook_data()
    with pytest.raises(ValidationError):
        schema.HookResultPayload.model_validate({**data, "event": event})


def test_info_payload() -> None:
    data = body(render.info(STAMP, INFO, RUNNING, "unix:/run/q.sock", 4242))
    assert {k: data[k] for k in ("qemu_version", "uuid", "machine", "accel", "ram_bytes",
                                 "vcpus", "run_state", "role", "role_reason", "qmp", "pid",
                                 "migration_events")} == {
        "qemu_version": "10.0.2", "uuid": None, "machine": "pc-i440fx-10.0", "accel": "tcg",
        "ram_bytes": 134217728, "vcpus": 1, "run_state": "running", "role": "running",
        "role_reason": "the guest is running", "qmp": "unix:/run/q.sock", "pid": 4242,
        "migration_events": True,
    }


def test_dirty_rate_measured_payload() -> None:
    msg = render.dirty_rate_measured(STAMP, MEASURED, 120)
    data = body(msg)
    assert data["bytes_per_s"] == 60.0 * 2**20
    assert (data["mode"], data["source"], data["window_s"], data["sample_pages"]) == (
        "page-sampling", "calc-dirty-rate", 0.5, 512)
    assert data["vcpus"] is None
    assert msg.expiry_s == 120


def test_dirty_rate_measured_per_vcpu() -> None:
    m = DirtyRateMeasurement(bytes_per_s=5.0, mode="dirty-ring", window_s=1.0, sample_pages=None,
                             started_at_s=None, vcpu_bytes_per_s=((0, 2.0), (1, 3.0)))
    data = body(render.dirty_rate_measured(STAMP, m, None))
    assert data["vcpus"] == [{"id": 0, "bytes_per_s": 2.0}, {"id": 1, "bytes_per_s": 3.0}]
    assert data["sample_pages"] is None


def test_dirty_rate_during_migration_says_how_it_was_counted_and_by_whom() -> None:
    msg = render.dirty_rate_during_migration(STAMP, QEMU_RATE, None)
    data = body(msg)
    assert (data["bytes_per_s"], data["mode"], data["source"], data["window_s"]) == (
        1.5e6, "migration-bitmap", "migration", None)
    assert msg.expiry_s is None
    estimate = DirtyEstimate(2e6, "estimate", "page-sampling", "last page-sampling measurement")
    data = body(render.dirty_rate_during_migration(STAMP, estimate, 60))
    assert (data["mode"], data["source"], data["basis"]) == (
        "page-sampling", "estimate", "last page-sampling measurement")


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


def test_event_payload() -> None:
    msg = render.event(STAMP, QmpEvent("STOP", {}, 1795271515.833952), 3600)
    data = body(msg)
    assert msg.topic == f"{VM}/event/STOP"
    assert (data["event"], data["data"], data["qemu_ts"]) == ("STOP", {}, 1795271515.833952)
    assert msg.expiry_s == 3600
    data = body(render.event(STAMP, EVENT, None))
    assert data["data"] == {"pass": EVENT.data["pass"]}


def test_event_name_is_sanitised_in_the_topic() -> None:
    msg = render.event(STAMP, QmpEvent("A/B#", {"x": [1, "y"]}, None), None)
    assert msg.topic == f"{VM}/event/A_B_"
    assert body(msg)["event"] == "A/B#"
    assert body(msg)["data"] == {"x": [1, "y"]}


def test_tracking_payload_of_a_vm_without_vfio() -> None:
    data = body(vfio.tracking(STAMP, NO_VFIO))
    assert (data["devices"], data["containers"], data["complete"]) == ([], [], True)
    assert data["qemu_version"] == "10.0.2" and data["realize_errors"] == []


@pytest.mark.parametrize(
    ("observed", "migratable", "agree"),
    [((), True, None), (("VFIO device doesn't support migration",), False, False),
     (("a", "b"), False, None)],
)
def test_blockers_payload_from_observation_alone(observed: tuple[str, ...], migratable: bool,
                                                 agree: bool | None) -> None:
    """A VM without VFIO devices: nothing was predicted, so agreement is claimed about
    nothing (null) unless QEMU reports a VFIO blocker after all (first-use review B6)."""
    data = body(vfio.blockers(STAMP, observed_only(observed)))
    assert data["migratable"] is migratable
    assert data["observed"] == list(observed)
    assert data["predicted"] == []
    assert data["agree"] is agree  # unmodelled kinds ("a", "b") never count for or against
    assert data["unexpected"] == [o for o in observed if o.startswith("VFIO")]
    assert data["unmodelled"] == [o for o in observed if not o.startswith("VFIO")]
    assert data["unknown_facts"] == ([] if agree is not False else [
        {"device": None, "fact": "devices", "reason": UNSEEN.reason}])


def test_daemon_state_is_a_host_topic_without_vm() -> None:
    stats = schema.OutboxStats(capacity=10, queued=2, dropped_total=5, dropped_by_vm={"a": 5})
    events = schema.QmpEventStats(dropped_total=0, dropped_by_vm={}, unreadable_total=2,
                                  unreadable_by_vm={"b": 2})
    msg = render.daemon_state(TOPICS, 3, TS, version="0.1.0", started_ts=STARTED, vms_online=1,
                              vms_known=2, outbox=stats, qmp_events=events,
                              mqtt_connects=4)
    assert msg.topic == "qmpdirty/kvm01/daemon"
    assert (msg.retain, msg.qos, msg.is_json) == (True, 1, True)
    data = body(msg)
    assert "vm" not in data and msg.vm == ""
    assert (data["schema"], data["ts"], data["host"], data["seq"]) == (1, TS, "kvm01", 3)
    assert data["outbox"] == {"capacity": 10, "queued": 2, "dropped_total": 5,
                              "dropped_by_vm": {"a": 5}}
    assert data["qmp_events"] == {"dropped_total": 0, "dropped_by_vm": {},
                                  "unreadable_total": 2, "unreadable_by_vm": {"b": 2}}
    assert (data["version"], data["vms_online"], data["vms_known"], data["mqtt_connects"]) == (
        "0.1.0", 1, 2, 4)
    schema.DaemonPayload.model_validate_json(msg.payload)


@pytest.mark.parametrize("online", [True, False])
def test_statuses_are_plain_text(online: bool) -> None:
    word = b"online" if online else b"offline"
    host = render.host_status(TOPICS, online)
    vm = render.vm_status(TOPICS, "web1", online)
    assert (host.topic, host.payload) == ("qmpdirty/kvm01/status", word)
    assert (vm.topic, vm.payload) == (f"{VM}/status", word)
    for msg in (host, vm):
        assert (msg.retain, msg.qos, msg.is_json, msg.expiry_s) == (True, 1, False, None)
    assert (host.vm, vm.vm) == ("", "web1")
    assert render.cleared(TOPICS, "web1", TopicKind.ERROR).vm == "web1"


def test_negative_seq_is_rejected_by_the_schema() -> None:
    with pytest.raises(ValidationError):
        vfio.tracking(VmStamp(TOPICS, "web1", -1, TS), NO_VFIO)


def test_unknown_role_is_rejected_by_the_schema() -> None:
    m = Migration(id="m", role="sideways", started_ts=STARTED, status="active",  # type: ignore[arg-type]
                  statuses=("active",))
    with pytest.raises(ValidationError):
        render.migration(STAMP, m, uuid=None)


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
