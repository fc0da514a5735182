"""QMP reply translation (qmp/translate.py, qmp/wire.py): identity, version, info, events.

On replies recorded from QEMU 10.0.2 (tests/support/recorded_replies.py). query-migrate and
query-dirty-rate: test_translate_migration.py; bad replies: test_translate_bad_replies.py.
"""

from __future__ import annotations

import pytest

from qmpdirty.facts.vm import VmBasics, VmIdentity
from qmpdirty.qmp import translate
from tests.support.recorded_replies import MIB, info_kwargs, load, recorded

# --- the recording itself -------------------------------------------------------------------


def test_recording_is_from_qemu_10_0_2() -> None:
    greeting = load("greeting.json")
    assert greeting["QMP"]["version"]["qemu"] == {"major": 10, "minor": 0, "micro": 2}
    assert translate.version_from(greeting["QMP"]["version"]) == (10, 0, 2)


# --- identity, version, info ------------------------------------------------------------


def test_version_from_recorded() -> None:
    assert translate.version_from(load("query-version.tcg.json")) == (10, 0, 2)


def test_identity_from_recorded_null_uuid_means_none() -> None:
    ident = translate.identity_from(load("query-name.tcg.json"), load("query-uuid.tcg.json"), 42)
    assert ident == VmIdentity(name="qmpdirty-rec", uuid=None, pid=42)


@pytest.mark.parametrize(
    ("name_reply", "uuid_reply", "expected"),
    [
        ({}, {"UUID": "00000000-0000-0000-0000-000000000000"}, VmIdentity(None, None)),
        ({"name": ""}, {"UUID": "00000000-0000-0000-0000-000000000000"}, VmIdentity(None, None)),
        ({"name": "vm1"}, {"UUID": "5c0c9b3e-4f52-4c1a-9d59-0b1e5b5f0e2a"},
         VmIdentity("vm1", "5c0c9b3e-4f52-4c1a-9d59-0b1e5b5f0e2a")),
        ({"name": "vm1", "future": 1}, {"UUID": "u", "other": []}, VmIdentity("vm1", "u")),
    ],
)
def test_identity_from(name_reply: object, uuid_reply: object, expected: VmIdentity) -> None:
    assert translate.identity_from(name_reply, uuid_reply, None) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("pc-i440fx-10.0-machine", "pc-i440fx-10.0"), ("pc-q35-10.0-machine", "pc-q35-10.0"),
     ("microvm", "microvm"), ("", None), (None, None), (5, None), ({"type": "x"}, None)],
)
def test_machine_from(reply: object, expected: str | None) -> None:
    assert translate.machine_from(reply) == expected


def test_machine_from_recorded_qom_get() -> None:
    assert translate.machine_from(load("qom-get.machine-type.json")) == "pc-i440fx-10.0"


@pytest.mark.parametrize(("name", "on"), [("query-migrate-capabilities.default.json", False),
                                          ("query-migrate-capabilities.events-on.json", True)])
def test_migration_events_from_recorded(name: str, on: bool) -> None:
    assert translate.migration_events_from(load(name)) is on


def test_migration_events_needs_the_events_capability_itself() -> None:
    assert translate.migration_events_from([{"capability": "x-events", "state": True}]) is False
    assert translate.migration_events_from([]) is False


def test_info_from_recorded() -> None:
    info = translate.info_from(**info_kwargs())
    assert info.basics == VmBasics((10, 0, 2), "pc-i440fx-10.0", base_ram_bytes=128 * MIB)
    assert info.basics.version_text == "10.0.2"
    assert info.accel == "tcg"
    assert info.basics.ram_bytes == 128 * MIB
    assert info.vcpus == 1
    assert info.run_state == "running"
    assert info.uuid is None
    assert info.migration_events is True


def test_info_from_kvm_and_plugged_memory() -> None:
    info = translate.info_from(**info_kwargs(
        kvm_reply={"enabled": True, "present": True},
        memory_reply={"base-memory": 1024, "plugged-memory": 512},
        cpus_reply=[{"cpu-index": i} for i in range(4)],
        identity=VmIdentity("x", "u"),
    ))
    assert (info.accel, info.basics.ram_bytes, info.vcpus, info.uuid) == ("kvm", 1536, 4, "u")
    # one meaning per name: -m (QEMU's ram_size) and memory devices, and the sum
    assert (info.basics.base_ram_bytes, info.basics.plugged_ram_bytes) == (1024, 512)


@pytest.mark.parametrize(("name", "state"), [("query-status.prelaunch.json", "prelaunch"),
                                             ("query-status.running.json", "running"),
                                             ("query-status.postmigrate.json", "postmigrate")])
def test_run_state_from_recorded(name: str, state: str) -> None:
    assert translate.run_state_from(load(name)) == state


# --- events --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", recorded("event.*.json"))
def test_recorded_events(name: str) -> None:
    raw = load(name)
    ev = translate.event_from(raw)
    assert ev.name == raw["event"]
    assert ev.data == raw.get("data", {})
    ts = raw["timestamp"]
    assert ev.qemu_ts == pytest.approx(ts["seconds"] + ts["microseconds"] / 1e6, abs=1e-6)


def test_recorded_migration_events_carry_status_and_pass() -> None:
    events = [translate.event_from(load(n)) for n in recorded("event.*.json")]
    names = {e.name for e in events}
    assert {"MIGRATION", "MIGRATION_PASS", "STOP"} <= names
    statuses = [e.data["status"] for e in events if e.name == "MIGRATION"]
    assert {"setup", "active", "device", "completed", "cancelling", "cancelled", "failed"} \
        <= set(statuses)
    assert all(isinstance(e.data["pass"], int) for e in events if e.name == "MIGRATION_PASS")
    stop = next(e for e in events if e.name == "STOP")
    assert stop.data == {}


@pytest.mark.parametrize(
    ("message", "qemu_ts"),
    [
        ({"event": "X", "timestamp": {"seconds": -1, "microseconds": -1}}, None),
        ({"event": "X"}, None),
        ({"event": "X", "timestamp": {"seconds": 10, "microseconds": 500000}}, 10.5),
    ],
)
def test_event_timestamp(message: object, qemu_ts: float | None) -> None:
    assert translate.event_from(message).qemu_ts == qemu_ts

