"""QMP reply translation (qmp/translate.py, qmp/wire.py) of bad replies: a bad shape is a
QmpReplyError naming the command and the member, and no JSON value raises anything else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.errors import QmpError, QmpReplyError
from qmpdirty.qmp import translate
from tests.support.recorded_replies import info_kwargs, load, recorded

# --- bad shapes -> QmpReplyError naming the command ---------------------------------------

GOOD_NAME = {"name": "vm"}
GOOD_UUID = {"UUID": "u"}

Call = Callable[[object], object]

BAD: list[tuple[str, Call, object, str, str]] = [
    # (id, function, reply, command named, field named)
    ("version-not-dict", translate.version_from, [], "query-version", "<reply>"),
    ("version-str", translate.version_from, "10.0.2", "query-version", "<reply>"),
    ("version-null", translate.version_from, None, "query-version", "<reply>"),
    ("version-missing-qemu", translate.version_from, {"package": ""}, "query-version", "qemu"),
    ("version-list-for-dict", translate.version_from, {"qemu": [10, 0, 2]}, "query-version",
     "qemu"),
    ("version-str-major", translate.version_from,
     {"qemu": {"major": "ten", "minor": 0, "micro": 2}}, "query-version", "qemu.major"),
    ("version-missing-micro", translate.version_from, {"qemu": {"major": 10, "minor": 0}},
     "query-version", "qemu.micro"),
    ("name-list", lambda r: translate.identity_from(r, GOOD_UUID, None), [], "query-name",
     "<reply>"),
    ("name-int", lambda r: translate.identity_from(r, GOOD_UUID, None), {"name": 5},
     "query-name", "name"),
    ("uuid-missing", lambda r: translate.identity_from(GOOD_NAME, r, None), {}, "query-uuid",
     "UUID"),
    ("uuid-list", lambda r: translate.identity_from(GOOD_NAME, r, None), {"UUID": ["u"]},
     "query-uuid", "UUID"),
    ("caps-dict", translate.migration_events_from, {"capability": "events", "state": True},
     "query-migrate-capabilities", "<reply>"),
    ("caps-missing-state", translate.migration_events_from, [{"capability": "events"}],
     "query-migrate-capabilities", "0.state"),
    ("caps-list-state", translate.migration_events_from,
     [{"capability": "events", "state": []}], "query-migrate-capabilities", "0.state"),
    ("kvm-missing", lambda r: translate.info_from(**info_kwargs(kvm_reply=r)), {"enabled": True},
     "query-kvm", "present"),
    ("status-missing-running", lambda r: translate.info_from(**info_kwargs(status_reply=r)),
     {"status": "running"}, "query-status", "running"),
    ("cpus-dict", lambda r: translate.info_from(**info_kwargs(cpus_reply=r)),
     {"cpu-index": 0}, "query-cpus-fast", "<reply>"),
    ("cpus-str-index", lambda r: translate.info_from(**info_kwargs(cpus_reply=r)),
     [{"cpu-index": "zero"}], "query-cpus-fast", "0.cpu-index"),
    ("memory-missing", lambda r: translate.info_from(**info_kwargs(memory_reply=r)), {},
     "query-memory-size-summary", "base-memory"),
    ("memory-str", lambda r: translate.info_from(**info_kwargs(memory_reply=r)),
     {"base-memory": "128M"}, "query-memory-size-summary", "base-memory"),
    # impossible values are reply errors, not facts (a peer sent base-memory -1, which
    # was published as ram_bytes -1)
    ("memory-negative", lambda r: translate.info_from(**info_kwargs(memory_reply=r)),
     {"base-memory": -1}, "query-memory-size-summary", "base-memory"),
    ("memory-plugged-negative", lambda r: translate.info_from(**info_kwargs(memory_reply=r)),
     {"base-memory": 1, "plugged-memory": -5}, "query-memory-size-summary", "plugged-memory"),
    ("migrate-negative-remaining", translate.migration_snapshot_from,
     {"status": "active", "ram": {"remaining": -1}}, "query-migrate", "ram.remaining"),
    ("migrate-negative-time", translate.migration_snapshot_from, {"total-time": -3},
     "query-migrate", "total-time"),
    ("params-negative-bandwidth", translate.migration_params_from, {"max-bandwidth": -1},
     "query-migrate-parameters", "max-bandwidth"),
    ("dirty-negative", translate.dirty_rate_from, {"status": "measured", "dirty-rate": -1},
     "query-dirty-rate", "dirty-rate"),
    ("run-state-list", translate.run_state_from, ["running"], "query-status", "<reply>"),
    ("run-state-int", translate.run_state_from, {"status": 1, "running": True}, "query-status",
     "status"),
    ("migrate-list", translate.migration_snapshot_from, [], "query-migrate", "<reply>"),
    ("migrate-str", translate.migration_snapshot_from, "active", "query-migrate", "<reply>"),
    ("migrate-int-status", translate.migration_snapshot_from, {"status": 3}, "query-migrate",
     "status"),
    ("migrate-ram-list", translate.migration_snapshot_from, {"ram": []}, "query-migrate", "ram"),
    ("migrate-ram-str-field", translate.migration_snapshot_from,
     {"status": "active", "ram": {"transferred": "lots"}}, "query-migrate", "ram.transferred"),
    ("migrate-fraction-time", translate.migration_snapshot_from, {"total-time": 1.5},
     "query-migrate", "total-time"),
    ("migrate-reasons-str", translate.migration_snapshot_from, {"blocked-reasons": "a"},
     "query-migrate", "blocked-reasons"),
    ("migrate-vfio-list", translate.migration_snapshot_from, {"vfio": [1]}, "query-migrate",
     "vfio"),
    ("dirty-missing-status", translate.dirty_rate_from, {"dirty-rate": 1}, "query-dirty-rate",
     "status"),
    ("dirty-null", translate.dirty_rate_from, None, "query-dirty-rate", "<reply>"),
    ("dirty-str-rate", translate.dirty_rate_from, {"status": "measured", "dirty-rate": "fast"},
     "query-dirty-rate", "dirty-rate"),
    ("dirty-vcpu-dict", translate.dirty_rate_from,
     {"status": "measured", "dirty-rate": 1, "vcpu-dirty-rate": {"0": 1}}, "query-dirty-rate",
     "vcpu-dirty-rate"),
    ("dirty-vcpu-missing-id", translate.dirty_rate_from,
     {"status": "measured", "dirty-rate": 1, "vcpu-dirty-rate": [{"dirty-rate": 1}]},
     "query-dirty-rate", "vcpu-dirty-rate.0.id"),
    ("event-empty", translate.event_from, {}, "event", "event"),
    ("event-empty-name", translate.event_from, {"event": ""}, "event", "event"),
    ("event-list-data", translate.event_from, {"event": "X", "data": []}, "event", "data"),
    ("event-str-seconds", translate.event_from,
     {"event": "X", "timestamp": {"seconds": "now", "microseconds": 0}}, "event",
     "timestamp.seconds"),
    ("event-list", translate.event_from, ["event"], "event", "<reply>"),
]


@pytest.mark.parametrize(("fn", "reply", "command", "where"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_shapes_raise_reply_error_naming_the_command(
    fn: Call, reply: object, command: str, where: str
) -> None:
    with pytest.raises(QmpReplyError) as info:
        fn(reply)
    message = str(info.value)
    assert message.startswith(f"{command}: unexpected reply: {where}: "), message
    assert isinstance(info.value, QmpError)
    assert info.value.__cause__ is not None  # translated with ``raise ... from``


# --- fuzz: any JSON value either translates or is a QmpReplyError -------------------------

_json_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                 | st.floats(allow_nan=False, allow_infinity=False))
_json: st.SearchStrategy[object] = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)

FUNCTIONS: dict[str, Call] = {
    "version_from": translate.version_from,
    "identity_from.name": lambda r: translate.identity_from(r, GOOD_UUID, None),
    "identity_from.uuid": lambda r: translate.identity_from(GOOD_NAME, r, None),
    "machine_from": translate.machine_from,
    "migration_events_from": translate.migration_events_from,
    "info_from.kvm": lambda r: translate.info_from(**info_kwargs(kvm_reply=r)),
    "info_from.status": lambda r: translate.info_from(**info_kwargs(status_reply=r)),
    "info_from.cpus": lambda r: translate.info_from(**info_kwargs(cpus_reply=r)),
    "info_from.memory": lambda r: translate.info_from(**info_kwargs(memory_reply=r)),
    "run_state_from": translate.run_state_from,
    "migration_snapshot_from": translate.migration_snapshot_from,
    "dirty_rate_from": translate.dirty_rate_from,
    "event_from": translate.event_from,
}

#: A recorded or typical reply per function: fuzzing replaces its members' values.
SHAPES: dict[str, dict[str, Any]] = {
    "version_from": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""},
    "identity_from.name": {"name": "vm"},
    "identity_from.uuid": {"UUID": "u"},
    "machine_from": {},
    "migration_events_from": {},
    "info_from.kvm": {"enabled": True, "present": True},
    "info_from.status": {"status": "running", "running": True},
    "info_from.cpus": {},
    "info_from.memory": {"base-memory": 1, "plugged-memory": 0},
    "run_state_from": {"status": "running", "running": True},
    "migration_snapshot_from": load("query-migrate.active-4.json"),
    "dirty_rate_from": load("query-dirty-rate.page-sampling.measured.json"),
    "event_from": load(recorded("event.*.MIGRATION.setup.json")[0]),
}


def returns_or_reply_error(fn: Call, reply: object) -> None:
    with contextlib.suppress(QmpReplyError):
        fn(reply)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@settings(max_examples=60, deadline=None)
@given(reply=_json)
def test_fuzz_any_json(name: str, reply: object) -> None:
    returns_or_reply_error(FUNCTIONS[name], reply)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fuzz_recorded_shapes_with_random_member_values(name: str, data: st.DataObject) -> None:
    shape = SHAPES[name]
    reply: dict[str, Any] = dict(shape)
    for key in data.draw(st.lists(st.sampled_from(sorted(shape)), unique=True), label="keys") \
            if shape else []:
        value = reply[key]
        if isinstance(value, dict) and value and data.draw(st.booleans(), label="deep"):
            inner = dict(value)
            inner[data.draw(st.sampled_from(sorted(inner)))] = data.draw(_json)
            reply[key] = inner
        else:
            reply[key] = data.draw(_json, label=key)
    returns_or_reply_error(FUNCTIONS[name], reply)


HUGE = 2**1100  # a JSON integer Python's json module accepts, beyond float range


@pytest.mark.parametrize(
    ("fn", "reply"),
    [
        (translate.dirty_rate_from, {"status": "measured", "dirty-rate": HUGE}),
        (translate.dirty_rate_from, {"status": "measured", "dirty-rate": 1, "start-time": HUGE}),
        (translate.dirty_rate_from, {"status": "measured", "dirty-rate": 1,
                                     "vcpu-dirty-rate": [{"id": 0, "dirty-rate": HUGE}]}),
        (translate.event_from, {"event": "X", "timestamp": {"seconds": HUGE,
                                                             "microseconds": 0}}),
        (translate.migration_snapshot_from, {"ram": {"dirty-pages-rate": HUGE,
                                                     "page-size": HUGE}}),
        (translate.migration_snapshot_from, {"ram": {"mbps": HUGE}}),
    ],
    ids=["dirty-rate", "start-time", "vcpu-dirty-rate", "event-seconds", "dirty-pages-rate",
         "mbps"],
)
def test_out_of_range_integers_translate_or_raise_reply_error(fn: Call, reply: object) -> None:
    """QEMU's integers are at most 64 bits; anything larger is a malformed reply."""
    returns_or_reply_error(fn, reply)

