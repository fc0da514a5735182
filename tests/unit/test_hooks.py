"""Hooks without subprocesses: config validation, matching, the bounded queue, overflow,
the forecast-negative transition and the result payload."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.config.hooks import HookConfig, HooksConfig
from qmpdirty.config.load import Config, load_config
from qmpdirty.errors import ConfigError
from qmpdirty.sinks.hooks import (
    HOOK_EVENTS,
    HookJob,
    HookOutcome,
    HookRunner,
    hook_environment,
    matching,
    outcome,
    printable,
)
from qmpdirty.telemetry import schema


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("QMPDIRTY_"):
            monkeypatch.delenv(name)


def runner(hooks: list[dict[str, Any]], **settings: Any) -> HookRunner:
    cfg = Config(hook=hooks, hooks=settings, host={"name": "h1"})
    return HookRunner(cfg, lambda *_: None)


def drain(r: HookRunner) -> list[HookJob]:
    return r.waiting()


def body(payload: object) -> bytes:
    """``payload`` as the daemon publishes it (compact JSON)."""
    return json.dumps(payload, separators=(",", ":")).encode()


# --- config ----------------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = Config()
    assert cfg.hook == []
    assert cfg.hooks == HooksConfig(max_concurrent=4, queue_size=100, timeout_s=10.0)


def test_events_are_the_documented_ones() -> None:
    assert HOOK_EVENTS == ("migration-status", "blockers-changed", "tracking-changed",
                           "forecast-negative", "vm-online", "vm-offline")


def problems(tmp_path: Path, text: str) -> list[tuple[str, str, str]]:
    path = tmp_path / "q.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_a_command_string_is_refused_with_a_hint(tmp_path: Path) -> None:
    [(key, message, hint)] = problems(tmp_path, '[[hook]]\nevent = "vm-online"\n'
                                                'command = "/usr/bin/logger vm online"\n')
    assert key == "hook[0].command"
    assert "not one string" in message
    assert 'command = ["/' in hint and "docs/hooks.md" in hint


def test_a_relative_executable_is_refused(tmp_path: Path) -> None:
    [(key, message, hint)] = problems(tmp_path, '[[hook]]\nevent = "vm-online"\n'
                                                'command = ["logger", "x"]\n')
    assert key == "hook[0].command"
    assert "absolute path" in message
    assert "docs/hooks.md" in hint


@pytest.mark.parametrize(("text", "key"), [
    ('[[hook]]\nevent = "migration"\ncommand = ["/bin/true"]\n', "hook[0].event"),
    ('[[hook]]\nevent = "*"\ncommand = []\n', "hook[0].command"),
    ('[[hook]]\nevent = "*"\ncommand = ["/bin/true"]\ntimeout_s = 0\n', "hook[0].timeout_s"),
    ('[hooks]\nmax_concurrent = 0\n', "hooks.max_concurrent"),
    ('[hooks]\nqueue_size = 0\n', "hooks.queue_size"),
    ('[hooks]\ntimeout = 5\n', "hooks.timeout"),
])
def test_bad_hook_config(tmp_path: Path, text: str, key: str) -> None:
    assert [p[0] for p in problems(tmp_path, text)] == [key]


def test_hooks_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text('[hooks]\nmax_concurrent = 2\n\n[[hook]]\nevent = "*"\n'
                    'command = ["/usr/local/bin/notify", "--all"]\ntimeout_s = 3\n')
    cfg = load_config(path)
    assert cfg.hooks.max_concurrent == 2
    assert cfg.hook == [HookConfig(event="*", command=["/usr/local/bin/notify", "--all"],
                                   timeout_s=3)]


# --- matching and transitions -----------------------------------------------------------------


def test_matching_takes_the_kind_and_the_wildcard_in_order() -> None:
    hooks = [HookConfig(event="*", command=["/a"]),
             HookConfig(event="vm-online", command=["/b"]),
             HookConfig(event="vm-offline", command=["/c"])]
    assert [h.command[0] for h in matching(hooks, "vm-online")] == ["/a", "/b"]
    assert [h.command[0] for h in matching(hooks, "blockers-changed")] == ["/a"]
    assert matching(hooks[1:], "forecast-negative") == []




# --- the queue ----------------------------------------------------------------------------------


def test_fire_queues_one_job_per_matching_hook() -> None:
    r = runner([{"event": "*", "command": ["/a", "x"]},
                {"event": "migration-status", "command": ["/b"], "timeout_s": 2}],
               timeout_s=7)
    r.fire_body("migration-status", "vm1", body({"status": "active"}))
    r.fire_online("vm1", info_payload("vm1"))
    jobs = drain(r)
    assert [(j.kind, j.command, j.timeout_s) for j in jobs] == [
        ("migration-status", ("/a", "x"), 7.0), ("migration-status", ("/b",), 2.0),
        ("vm-online", ("/a", "x"), 7.0)]
    assert json.loads(jobs[0].stdin) == {"status": "active"}
    assert jobs[0].stdin.endswith(b"\n")


def test_no_hooks_no_work() -> None:
    r = runner([])
    r.fire_body("migration-status", "vm1", body({"status": "active"}))
    assert r.queued == 0 and r.dropped_total == 0


def test_overflow_drops_the_oldest_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    r = runner([{"event": "*", "command": ["/a"]}], queue_size=3)
    with caplog.at_level(logging.WARNING, "qmpdirty.sinks.hooks"):
        for n in range(5):
            r.fire_body("tracking-changed", f"vm{n}", body({"n": n}))
    assert r.queued == 3
    assert r.dropped_total == 2
    assert [j.vm for j in drain(r)] == ["vm2", "vm3", "vm4"]
    assert len([m for m in caplog.messages if "hook queue full" in m]) == 1


def test_fire_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    r = runner([{"event": "*", "command": ["/a"]}])
    broken = info_payload("vm1").model_copy(update={"ts": object()})  # not serialisable
    r.fire_online("vm1", broken)
    r.fire_online("vm1", info_payload("vm1"))
    assert r.queued == 1
    assert any("not queued" in m for m in caplog.messages)
    stopped = HookRunner(Config(hook=[{"event": "vm-offline", "command": ["/a"]}]),
                         lambda *_: None, clock=lambda: 1 / 0)
    stopped.fire_offline("vm1")
    assert stopped.queued == 0
    assert any("vm-offline on VM vm1 were not queued" in m for m in caplog.messages)


def test_a_hostile_name_stays_data() -> None:
    name = "$(touch /tmp/x); rm -rf /"
    r = runner([{"event": "*", "command": ["/a"]}])
    r.fire_body("blockers-changed", name, body({"vm": name}))
    r.fire_offline(name)
    [job, offline] = drain(r)
    assert job.vm == name and job.command == ("/a",)
    assert json.loads(job.stdin) == {"vm": name}
    assert json.loads(offline.stdin)["vm"] == name
    assert hook_environment("vm-offline", name, "h1", "/bin") == {
        "QMPDIRTY_EVENT": "vm-offline", "QMPDIRTY_VM": name, "QMPDIRTY_HOST": "h1",
        "PATH": "/bin"}


# --- results ---------------------------------------------------------------------------------


def test_outcome_shape_and_failure() -> None:
    ok = outcome("vm-online", ["/a", "b"], exit_code=0, timed_out=False, error=None,
                 duration_s=0.12345)
    assert ok == HookOutcome(event="vm-online", command=("/a", "b"), exit_code=0,
                             timed_out=False, error=None, duration_s=0.123)
    assert not ok.failed
    assert replace(ok, exit_code=1, error="exit status 1").failed
    assert replace(ok, exit_code=None, error="executable not found: /a").failed
    assert replace(ok, exit_code=-9, timed_out=True, error="timed out").failed
    assert replace(ok, error="internal error").failed


def test_outcome_is_the_hook_payload() -> None:
    """Every field of a ``HookOutcome`` is a field of the ``vm/<vm>/hook`` payload."""
    fields = {f.name for f in dataclasses.fields(HookOutcome)}
    assert fields <= set(schema.HookResultPayload.model_fields)


def test_a_published_body_is_one_line_on_stdin() -> None:
    r = runner([{"event": "*", "command": ["/bin/a"]}])
    r.fire_body("migration-status", "vm1", b'{"a":1}')
    r.fire_body("migration-status", "vm1", b'{"a":1}\n')
    assert [j.stdin for j in drain(r)] == [b'{"a":1}\n', b'{"a":1}\n']


# --- vm-offline: its stdin, and its place in the queue at stop ------------------------------


def info_payload(vm: str, qmp: str = "unix:/x") -> schema.InfoPayload:
    return schema.InfoPayload(
        ts=1.5, host="h1", vm=vm, seq=3, qemu_version="10.0.2", uuid=None, machine="q35",
        accel="tcg", ram_bytes=1 << 28, vcpus=1, run_state="running", role="running",
        role_reason="the guest runs", qmp=qmp, pid=42, migration_events=True,
    )


def test_vm_online_stdin_is_the_info_payload() -> None:
    """The ``info`` payload as published, on one line of JSON with non-ASCII escaped
    (as it was when the runner was handed the published bytes and re-serialised them)."""
    r = runner([{"event": "vm-online", "command": ["/a"]}])
    info = info_payload("web1", qmp="unix:/run/qemu/café.sock")
    r.fire_online("web1", info)
    [job] = drain(r)
    published = json.loads(info.model_dump_json(by_alias=True))
    assert job.stdin == json.dumps(published, separators=(",", ":")).encode() + b"\n"
    assert b"caf\\u00e9" in job.stdin


def test_vm_offline_stdin_says_when_why_and_the_last_info() -> None:
    """B10: the vm-offline hook got ``{}``; now a ``VmOfflineInput``."""
    cfg = Config(hook=[{"event": "vm-offline", "command": ["/a"]}], host={"name": "h1"})
    r = HookRunner(cfg, lambda *_: None, clock=lambda: 100.25)
    r.fire_online("web1", info_payload("web1"))  # no hook for it: only remembered
    r.fire_offline("web1")
    r.fire_offline("web1")  # a second time: the info was for one session
    r.stopping()
    r.fire_offline("db", info_payload("db"))  # a payload given wins
    first, again, stopped = (json.loads(j.stdin) for j in drain(r))
    assert first == {"schema": 1, "ts": 100.25, "host": "h1", "vm": "web1",
                     "event": "vm-offline", "reason": "session-ended",
                     "info": info_payload("web1").model_dump(mode="json", by_alias=True)}
    assert again["info"] is None and again["reason"] == "session-ended"
    assert stopped["reason"] == "daemon-stopping" and stopped["info"]["vm"] == "db"
    assert stopped["info"]["pid"] == 42


def test_at_stop_vm_offline_runs_go_first() -> None:
    """Queued before ``stopping`` they are promoted; fired after it they go first."""
    r = runner([{"event": "*", "command": ["/a"]}])
    for n in range(3):
        r.fire_body("blockers-changed", f"vm{n}", b"{}")
    r.fire_offline("vm0")
    r.fire_body("tracking-changed", "vm1", b"{}")
    r.stopping()
    r.fire_body("migration-status", "vm2", b"{}")
    r.fire_offline("vm1")
    assert [(j.kind, j.vm) for j in drain(r)] == [
        ("vm-offline", "vm0"), ("vm-offline", "vm1"), ("blockers-changed", "vm0"),
        ("blockers-changed", "vm1"), ("blockers-changed", "vm2"), ("tracking-changed", "vm1"),
        ("migration-status", "vm2")]


def test_a_full_queue_at_stop_drops_other_runs_before_vm_offline() -> None:
    r = runner([{"event": "*", "command": ["/a"]}], queue_size=3)
    r.stopping()
    for n in range(3):
        r.fire_offline(f"off{n}")
    r.fire_body("blockers-changed", "x", b"{}")  # the queue is all vm-offline: the oldest goes
    assert [j.vm for j in drain(r)] == ["off1", "off2", "x"]
    r.fire_offline("off3")  # the other run makes room first
    assert [j.vm for j in drain(r)] == ["off1", "off2", "off3"]
    assert r.dropped_total == 2


@pytest.mark.parametrize(("raw", "shown"), [
    ("bad\x00thing", "bad\ufffdthing"),
    ("\x1b[31mred\x1b[0m", "\ufffd[31mred\ufffd[0m"),
    ("tab\tkept\nnewline kept", "tab\tkept\nnewline kept"),
    ("cr\rdel\x7fc1\x85", "cr\ufffddel\ufffdc1\ufffd"),
])
def test_printable_replaces_control_characters(raw: str, shown: str) -> None:
    assert printable(raw) == shown
