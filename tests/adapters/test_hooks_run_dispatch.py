"""HookRunner with real subprocesses: what a hook is handed (stdin, environment,
arguments), which hooks an event runs, the concurrency limit, a queue that never blocks
the caller, and VM names that try to inject shell.

Every test runs under asyncio and under uvloop (the daemon's loop). Hooks that hang, fail
or leave children, and the runner's stop: test_hooks_run_faults.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from tests.support.fleet_payloads import info_model
from tests.support.hook_scripts import (
    Start,
    recorder_hook,
    records,
    script,
    until,
)

#: Both loops (tests/adapters/conftest.py): the daemon runs on uvloop.
EVENT_LOOPS = ("asyncio", "uvloop")
pytestmark = pytest.mark.usefixtures("clean_env")


async def test_stdin_environment_and_arguments(
    start_hooks: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAEMON_SECRET", "hunter2")
    out = tmp_path / "out"
    out.mkdir()
    hook = recorder_hook(tmp_path)
    runner, results = await start_hooks([{"event": "migration-status",
                                           "command": [str(hook), str(out)]}])
    payload = {"status": "active", "pass": 2, "nested": {"x": [1, 2]}}
    runner.fire_body("migration-status", "web1", json.dumps(payload).encode())
    runner.fire_online("web1", info_model("testhost", "web1"))  # no hook for it
    [doc] = await until(lambda: records(out))
    assert json.loads(doc["stdin"]) == payload
    assert doc["argv"] == [str(out)]
    env = dict(doc["env"])
    env.pop("LC_CTYPE", None)  # Python may set it while coercing the C locale
    assert env == {"QMPDIRTY_EVENT": "migration-status", "QMPDIRTY_VM": "web1",
                   "QMPDIRTY_HOST": "testhost", "PATH": os.environ["PATH"]}
    await asyncio.sleep(0.2)
    assert results == [] and len(records(out)) == 1


async def test_wildcard_and_several_hooks_per_event(start_hooks: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = recorder_hook(tmp_path)
    runner, _ = await start_hooks([
        {"event": "*", "command": [str(hook), str(out), "star"]},
        {"event": "vm-offline", "command": [str(hook), str(out), "offline"]},
    ])
    runner.fire_offline("a")
    runner.fire_body("blockers-changed", "a", b'{"migratable": false}')
    docs = await until(lambda: len(records(out)) == 3 and records(out))
    seen = sorted((d["env"]["QMPDIRTY_EVENT"], d["argv"][1]) for d in docs)
    assert seen == [("blockers-changed", "star"), ("vm-offline", "offline"),
                    ("vm-offline", "star")]


async def test_a_hook_that_ignores_stdin_is_fine(start_hooks: Start, tmp_path: Path) -> None:
    hook = script(tmp_path / "quick.sh", "exit 0\n")
    done = tmp_path / "done"
    after = script(tmp_path / "after.sh", f"touch {done}\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)]},
                                         {"event": "vm-online", "command": [str(after)]}],
                                        max_concurrent=1)
    runner.fire_online("a", info_model("testhost", "a").model_copy(
        update={"role_reason": "x" * 2_000_000}))
    await until(done.exists)
    await asyncio.sleep(0.1)
    assert results == []


async def test_concurrency_limit(start_hooks: Start, tmp_path: Path) -> None:
    log = tmp_path / "times"
    log.mkdir()
    hook = script(tmp_path / "work.sh",
                  f"s=$(date +%s.%N)\nsleep 0.3\necho \"$s $(date +%s.%N)\" > {log}/$$\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)]}],
                                        max_concurrent=2)
    started = time.monotonic()
    for n in range(6):
        runner.fire_online(f"vm{n}", info_model("testhost", f"vm{n}"))
    await until(lambda: len(list(log.iterdir())) == 6, timeout_s=15)
    elapsed = time.monotonic() - started
    spans = [tuple(map(float, p.read_text().split())) for p in log.iterdir()]
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                   key=lambda x: (x[0], x[1]))
    running, peak = 0, 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2, spans
    assert elapsed >= 0.85, elapsed  # 6 runs of 0.3 s, two at a time
    assert results == []


async def test_fire_returns_at_once_while_hooks_run(start_hooks: Start, tmp_path: Path) -> None:
    hook = script(tmp_path / "slow.sh", "sleep 2\n")
    runner, _ = await start_hooks([{"event": "*", "command": [str(hook)]}], max_concurrent=1,
                                  queue_size=5)
    await asyncio.sleep(0)
    began = time.perf_counter()
    for n in range(50):
        runner.fire_body("tracking-changed", f"vm{n}", b'{"n": %d}' % n)
    assert time.perf_counter() - began < 0.05
    assert runner.queued <= 5
    assert runner.dropped_total >= 44


async def test_hostile_vm_name_never_runs_anything(start_hooks: Start, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    pwned = tmp_path / "pwned"
    # (never `rm -rf /` here: a regression would then wipe the test machine)
    name = f"$(touch {pwned}); `touch {pwned}2`; rm -rf {victim}; echo ${{IFS}}x\n'\""
    out = tmp_path / "out"
    out.mkdir()
    hook = recorder_hook(tmp_path)
    # a shell hook that uses the variable, quoted, as documented
    shell_hook = script(tmp_path / "uses-var.sh", f'printf %s "$QMPDIRTY_VM" > {out}/name\n')
    runner, results = await start_hooks([{"event": "*", "command": [str(hook), str(out)]},
                                         {"event": "*", "command": [str(shell_hook)]}])
    runner.fire_offline(name)
    [doc] = await until(lambda: records(out))
    await until((out / "name").exists)
    assert doc["env"]["QMPDIRTY_VM"] == name
    assert json.loads(doc["stdin"])["vm"] == name  # the vm-offline input names it
    assert (out / "name").read_text() == name
    assert victim.exists()
    assert not pwned.exists() and not pwned.with_name("pwned2").exists()
    assert results == []
