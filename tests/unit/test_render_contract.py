"""Rendering into MQTT messages (telemetry/render/ + schema.py): the contract every
payload keeps (topic, retain and QoS, the common fields, the published models), the
daemon's and the status topics, and what the schema refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from qmpdirty.config.hooks import qmp_hook_event
from qmpdirty.decisions.migration.claim import claim
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.decisions.migration.uncertainty import outlook
from qmpdirty.sinks.hooks import outcome
from qmpdirty.telemetry import render, schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render import forecast as fc
from qmpdirty.telemetry.render import vfio
from qmpdirty.telemetry.topics import TopicKind
from tests.support.render_inputs import (
    EVENT,
    FC_IN,
    INFO,
    MEASURED,
    MIGRATION,
    NO_VFIO,
    QEMU_RATE,
    RUNNING,
    STAMP,
    STARTED,
    TOPICS,
    TS,
    UUID,
    VM,
    body,
)

# (id, render call, topic, kind, payload model)
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
