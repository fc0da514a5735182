"""Hooks on QMP events (``[[hook]] event = "qmp:NAME"``): the name and ``data`` filter
validated with their key path and a hint, which hooks an event is due for, and what
the runner queues: the message as QEMU sent it, for ``QMPDIRTY_EVENT=qmp:NAME``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.config.hooks import HookConfig, qmp_event_name, qmp_hook_event
from qmpdirty.config.load import Config, load_config
from qmpdirty.decisions.migration.hooks_due import data_matches, json_equal, qmp_hooks_due
from qmpdirty.errors import ConfigError
from qmpdirty.facts.vm import QmpEvent
from qmpdirty.qmp.translate import event_from
from qmpdirty.sinks.hooks import HookRunner, hook_environment, matching
from tests.support.fleet_payloads import info_model


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("QMPDIRTY_"):
            monkeypatch.delenv(name)


def problems(tmp_path: Path, text: str) -> list[tuple[str, str, str]]:
    path = tmp_path / "q.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def hook_toml(event: str, extra: str = "") -> str:
    return f'[[hook]]\nevent = {json.dumps(event)}\ncommand = ["/bin/true"]\n{extra}'


# --- config ----------------------------------------------------------------------------------


def test_a_qmp_hook_with_a_data_filter_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text(hook_toml("qmp:BLOCK_IO_ERROR",
                              'data = { device = "drive0", action = "stop", nospace = false,'
                              ' qom-path = "/machine/x", n = 3, list = [1, "a"],'
                              ' sub = { a = 1.5 } }\n')
                    + hook_toml("qmp:GUEST_PANICKED") + hook_toml("qmp:VFIO_MIGRATION"))
    cfg = load_config(path)
    io_error, panic, vfio = cfg.hook
    assert io_error.event == "qmp:BLOCK_IO_ERROR" and io_error.qmp_event == "BLOCK_IO_ERROR"
    assert io_error.data == {"device": "drive0", "action": "stop", "nospace": False,
                             "qom-path": "/machine/x", "n": 3, "list": [1, "a"],
                             "sub": {"a": 1.5}}
    assert (panic.qmp_event, panic.data) == ("GUEST_PANICKED", None)
    assert vfio.qmp_event == "VFIO_MIGRATION"
    assert HookConfig(event="vm-online", command=["/a"]).qmp_event is None


@pytest.mark.parametrize(("event", "said"), [
    ("qmp:", "names no QMP event"),
    ("qmp:  ", "names no QMP event"),
    ("qmp:guest_panicked", 'did you mean "qmp:GUEST_PANICKED"?'),
    ("qmp:block-io-error", 'did you mean "qmp:BLOCK_IO_ERROR"?'),
    ("qmp:Stop", 'did you mean "qmp:STOP"?'),
    ("QMP:STOP", 'the prefix is lower case: did you mean "qmp:STOP"?'),
    ("qmp:1STOP", "'1STOP' is not a QMP event name"),
    ("qmp:GUEST PANICKED", "is not a QMP event name"),
    ("qmp:STOP*", "is not a QMP event name"),
    ("GUEST_PANICKED", 'for the QMP event GUEST_PANICKED, write "qmp:GUEST_PANICKED"'),
    ("migration", 'did you mean "migration-status"?'),
    ("", 'or "qmp:NAME" for a QMP event'),
])
def test_a_bad_event_names_its_key_says_what_was_meant_and_hints(
    tmp_path: Path, event: str, said: str,
) -> None:
    [(key, message, hint)] = problems(tmp_path, hook_toml(event))
    assert key == "hook[0].event"
    assert said in message, message
    assert '"qmp:NAME"' in hint and "docs/hooks.md" in hint


def test_an_event_that_is_no_string_is_refused(tmp_path: Path) -> None:
    [(key, message, _)] = problems(tmp_path, '[[hook]]\nevent = 5\ncommand = ["/bin/true"]\n')
    assert key == "hook[0].event" and "must be a string" in message


@pytest.mark.parametrize("event", ["migration-status", "vm-offline", "*"])
def test_data_on_a_hook_that_is_not_a_qmp_event_is_refused(tmp_path: Path, event: str) -> None:
    [(key, message, hint)] = problems(tmp_path, hook_toml(event, 'data = { status = "failed" }\n'))
    assert key == "hook[0].data"
    assert "only a QMP event's hook has a data filter" in message and f'"{event}"' in message
    assert "qmp:BLOCK_IO_ERROR" in hint


@pytest.mark.parametrize(("extra", "said"), [
    ('data = "drive0"\n', "valid dictionary"),
    ("data = { when = 1979-05-27 }\n", "when is a TOML date or time"),
    ("data = { at = 07:32:00 }\n", "at is a TOML date or time"),
    ("data = { sub = { x = [1, nan] } }\n", "sub.x[1] is nan, which JSON cannot hold"),
    ("data = { x = inf }\n", "x is inf"),
])
def test_a_data_filter_json_cannot_hold_is_refused(tmp_path: Path, extra: str, said: str) -> None:
    [(key, message, _)] = problems(tmp_path, hook_toml("qmp:STOP", extra))
    assert key == "hook[0].data" and said in message, message


def test_a_bad_event_reports_only_the_event_not_its_data_too(tmp_path: Path) -> None:
    assert [p[0] for p in problems(tmp_path, hook_toml("qmp:stop", "data = { a = 1 }\n"))] == [
        "hook[0].event"]


def test_qmp_hooks_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text("")
    monkeypatch.setenv("QMPDIRTY_HOOK", json.dumps([
        {"event": "qmp:DEVICE_DELETED", "command": ["/a"], "data": {"device": "net0"}}]))
    [hook] = load_config(path).hook
    assert (hook.qmp_event, hook.data) == ("DEVICE_DELETED", {"device": "net0"})


def test_the_names_of_qmp_hook_events() -> None:
    assert qmp_hook_event("STOP") == "qmp:STOP"
    assert qmp_event_name("qmp:STOP") == "STOP"
    assert qmp_event_name("vm-online") is None and qmp_event_name("*") is None


# --- which hooks are due -----------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "equal"), [
    ("drive0", "drive0", True),
    ("drive0", "Drive0", False),
    (1, 1, True),
    (1, 1.0, True),  # JSON has one number type
    (True, 1, False),  # a boolean is not a number
    (1, True, False),
    (False, 0, False),
    (False, False, True),
    ("1", 1, False),
    ([1, "a"], [1, "a"], True),
    ([1, "a"], ["a", 1], False),
    ([1], [1, 1], False),
    ([True], [1], False),
    ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False),  # a nested object must be whole
    ({"a": {"b": [1]}}, {"a": {"b": [1.0]}}, True),
    (None, None, True),
    (None, "null", False),
])
def test_json_equal(a: object, b: object, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


IO_ERROR = {"device": "drive0", "node-name": "#block123", "operation": "write",
            "action": "stop", "nospace": False, "reason": "No space left on device"}


@pytest.mark.parametrize(("wanted", "matches"), [
    (None, True),
    ({}, True),
    ({"device": "drive0"}, True),
    ({"device": "drive0", "action": "stop"}, True),
    ({"device": "drive0", "action": "report"}, False),  # every key must match
    ({"device": "drive1"}, False),
    ({"nospace": False}, True),
    ({"nospace": 0}, False),
    ({"node-name": "#block123"}, True),
    ({"qom-path": "/machine/x"}, False),  # a key the event lacks
    ({"reason": "No space"}, False),  # no substrings: equality
])
def test_data_matches_every_key_given(wanted: dict[str, Any] | None, matches: bool) -> None:
    assert data_matches(wanted, IO_ERROR) is matches


def test_qmp_hooks_due_by_name_and_filter_in_order() -> None:
    hooks = [HookConfig(event="qmp:BLOCK_IO_ERROR", command=["/any"]),
             HookConfig(event="*", command=["/star"]),
             HookConfig(event="qmp:BLOCK_IO_ERROR", command=["/d0"], data={"device": "drive0"}),
             HookConfig(event="qmp:BLOCK_IO_ERROR", command=["/d1"], data={"device": "drive1"}),
             HookConfig(event="qmp:STOP", command=["/stop"]),
             HookConfig(event="migration-status", command=["/mig"])]
    due = qmp_hooks_due(hooks, QmpEvent("BLOCK_IO_ERROR", IO_ERROR))
    assert [h.command[0] for h in due] == ["/any", "/d0"]
    assert [h.command[0] for h in qmp_hooks_due(hooks, QmpEvent("STOP"))] == ["/stop"]
    assert qmp_hooks_due(hooks, QmpEvent("stop")) == []  # QEMU's names are exact
    assert qmp_hooks_due(hooks, QmpEvent("MIGRATION", {"status": "setup"})) == []
    # and a kind never runs a qmp:NAME hook, "*" included
    assert [h.command[0] for h in matching(hooks, "migration-status")] == ["/star", "/mig"]


# --- the runner: what is queued ----------------------------------------------------------------


PANIC = {"timestamp": {"seconds": 1765093156, "microseconds": 912946},
         "event": "GUEST_PANICKED", "data": {"action": "pause"}}


def runner(hooks: list[dict[str, Any]]) -> HookRunner:
    return HookRunner(Config(hook=hooks, host={"name": "h1"}), lambda *_: None)


def test_fire_qmp_queues_the_message_as_qemu_sent_it() -> None:
    r = runner([{"event": "qmp:GUEST_PANICKED", "command": ["/p"], "timeout_s": 3},
                {"event": "qmp:GUEST_PANICKED", "command": ["/no"], "data": {"action": "poweroff"}},
                {"event": "*", "command": ["/star"]}])
    r.fire_qmp("web1", event_from(PANIC))
    r.fire_qmp("web1", event_from({"event": "STOP", "timestamp": PANIC["timestamp"]}))
    [job] = r.waiting()
    assert (job.kind, job.vm, job.command, job.timeout_s) == (
        "qmp:GUEST_PANICKED", "web1", ("/p",), 3.0)
    assert json.loads(job.stdin) == PANIC and job.stdin.endswith(b"}\n")
    assert list(json.loads(job.stdin)) == ["timestamp", "event", "data"]  # QEMU's order
    assert hook_environment(job.kind, job.vm, "h1", "/bin") == {
        "QMPDIRTY_EVENT": "qmp:GUEST_PANICKED", "QMPDIRTY_VM": "web1", "QMPDIRTY_HOST": "h1",
        "PATH": "/bin"}


def test_an_event_without_data_is_passed_on_without_one() -> None:
    r = runner([{"event": "qmp:STOP", "command": ["/s"]}])
    stop = {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}
    r.fire_qmp("vm1", event_from(stop))
    assert [json.loads(j.stdin) for j in r.waiting()] == [stop]


def test_derived_events_do_not_run_qmp_hooks_and_without_any_nothing_is_queued() -> None:
    r = runner([{"event": "qmp:STOP", "command": ["/s"]}])
    r.fire_online("vm1", info_model("h1", "vm1"))
    r.fire_offline("vm1")
    assert r.queued == 0
    r = runner([{"event": "*", "command": ["/star"]}])
    r.fire_qmp("vm1", event_from(PANIC))
    assert r.queued == 0


def test_fire_qmp_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    r = runner([{"event": "qmp:X", "command": ["/x"]}])
    loop: dict[str, object] = {}
    loop["self"] = loop
    r.fire_qmp("vm1", QmpEvent("X", raw=loop))  # not serialisable
    assert r.queued == 0 and "were not queued" in caplog.text


def test_qmp_hook_runs_wait_in_the_queue_behind_vm_offline_at_stop() -> None:
    r = runner([{"event": "qmp:STOP", "command": ["/s"]},
                {"event": "vm-offline", "command": ["/o"]}])
    r.fire_qmp("vm1", event_from({"event": "STOP", "timestamp": PANIC["timestamp"]}))
    r.stopping()
    r.fire_offline("vm1")
    assert [j.kind for j in r.waiting()] == ["vm-offline", "qmp:STOP"]


def test_event_from_keeps_the_message_as_raw() -> None:
    event = event_from(PANIC)
    assert (event.name, event.data, event.raw) == ("GUEST_PANICKED", {"action": "pause"}, PANIC)
    assert event.raw is not PANIC  # a copy: the session's message is not shared
