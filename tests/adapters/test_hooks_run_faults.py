"""HookRunner with real subprocesses: timeout kill, missing executables, children that
outlive the hook, stderr with control characters, an unexpected failure, and stopping:
vm-offline first, and what running or finished hooks left is killed.

Every test runs under asyncio and under uvloop (the daemon's loop): uvloop hands a
hook's children extra copies of its pipes. What a hook is handed and which hooks run:
test_hooks_run_dispatch.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.config.load import Config
from qmpdirty.sinks.hooks import HookOutcome, HookRunner
from tests.support.fleet_payloads import info_model
from tests.support.hook_scripts import (
    INFO,
    Start,
    alive,
    gone,
    recorder_hook,
    records,
    script,
    until,
)

#: Both loops (tests/adapters/conftest.py): the daemon runs on uvloop.
EVENT_LOOPS = ("asyncio", "uvloop")
pytestmark = pytest.mark.usefixtures("clean_env")


async def test_timeout_kills_the_hook_and_its_children(start_hooks: Start, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path / "slow.sh", f"sleep 60 &\necho $! > {pidfile}\nwait\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)],
                                           "timeout_s": 0.5}])
    started = time.monotonic()
    runner.fire_online("a", INFO)
    [(kind, vm, command, outcome)] = await until(lambda: results)
    assert time.monotonic() - started < 3
    assert (kind, vm, command) == ("vm-online", "a", (str(hook),))
    assert outcome.timed_out is True
    assert outcome.error == "timed out after 0.5s; killed"
    assert outcome.exit_code == -9
    assert isinstance(outcome.duration_s, float) and 0.5 <= outcome.duration_s < 3
    child = int(pidfile.read_text())
    await until(lambda: gone(child))


async def test_missing_and_unusable_executables(start_hooks: Start, tmp_path: Path) -> None:
    not_exec = tmp_path / "not-exec"
    not_exec.write_text("#!/bin/sh\nexit 0\n")
    failing = script(tmp_path / "fail.sh", "echo first >&2\necho 'disk full' >&2\nexit 3\n")
    runner, results = await start_hooks([
        {"event": "vm-online", "command": [str(tmp_path / "missing")]},
        {"event": "vm-online", "command": [str(not_exec)]},
        {"event": "vm-online", "command": [str(failing)]},
    ], max_concurrent=1)
    runner.fire_online("a", INFO)
    await until(lambda: len(results) == 3)
    errors = {r[2][0]: r[3] for r in results}
    assert errors[str(tmp_path / "missing")].error == \
        f"executable not found: {tmp_path / 'missing'}"
    assert errors[str(tmp_path / "missing")].exit_code is None
    assert errors[str(not_exec)].error == f"cannot execute {not_exec}: permission denied"
    assert errors[str(failing)].exit_code == 3
    assert errors[str(failing)].error == "exit status 3: disk full"
    for command, outcome in errors.items():
        assert (outcome.event, outcome.command) == ("vm-online", (command,))
        assert outcome.timed_out is False


async def test_stopping_the_runner_kills_running_hooks(tmp_path: Path) -> None:
    pidfile = tmp_path / "hook.pid"
    hook = script(tmp_path / "long.sh", f"echo $$ > {pidfile}\nexec sleep 60\n")
    cfg = Config(hook=[{"event": "*", "command": [str(hook)]}], host={"name": "h"})
    runner = HookRunner(cfg, lambda *_: None)
    task = asyncio.create_task(runner.run())
    runner.fire_online("a", INFO)
    pid = int(await until(lambda: pidfile.exists() and pidfile.read_text().strip()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(pid)  # killed before run() returned


async def test_an_unexpected_failure_is_reported_and_the_worker_goes_on(
    start_hooks: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, results = await start_hooks([{"event": "*", "command": ["/bin/true"]}],
                                        max_concurrent=1)
    real = runner._workers._execute
    calls = 0

    async def flaky(job: Any) -> HookOutcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return await real(job)

    monkeypatch.setattr(runner._workers, "_execute", flaky)
    runner.fire_online("a", INFO)
    runner.fire_online("b", info_model("testhost", "b"))
    await until(lambda: calls == 2)
    await asyncio.sleep(0.2)
    [(_, vm, _, outcome)] = results
    assert vm == "a" and outcome.error == "internal error: RuntimeError('boom')"



async def test_a_detached_child_does_not_hold_the_hook(start_hooks: Start, tmp_path: Path) -> None:
    """docs/hooks.md's recipe, ``setsid cmd >/dev/null 2>&1 &``: the hook is judged by
    its own exit (it was reported as timed out: under uvloop the child kept a copy of
    the hook's stderr, and the runner waited for its end-of-file)."""
    pidfile = tmp_path / "child.pid"
    done = tmp_path / "done"
    hook = script(tmp_path / "detach.sh",
                  f"setsid sleep 30 >/dev/null 2>&1 &\necho $! > {pidfile}\nexit 0\n")
    after = script(tmp_path / "after.sh", f"touch {done}\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)],
                                          "timeout_s": 5},
                                         {"event": "vm-online", "command": [str(after)]}],
                                        max_concurrent=1)
    started = time.monotonic()
    runner.fire_online("a", INFO)
    await until(done.exists)
    child = int(pidfile.read_text())
    try:
        assert time.monotonic() - started < 2.5
        await asyncio.sleep(0.1)
        assert results == []
        assert alive(child)  # detached: it outlives the hook, as documented
    finally:
        os.kill(child, 9)


async def test_a_failing_hook_with_a_detached_child_reports_its_own_exit(
    start_hooks: Start, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path / "detach-fail.sh",
                  f"setsid sleep 30 >/dev/null 2>&1 &\necho $! > {pidfile}\n"
                  "echo 'no route to pager' >&2\nexit 4\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)],
                                          "timeout_s": 5}])
    started = time.monotonic()
    runner.fire_online("a", INFO)
    [(_, _, _, result)] = await until(lambda: results)
    os.kill(int(pidfile.read_text()), 9)
    assert time.monotonic() - started < 2.5
    assert (result.exit_code, result.timed_out) == (4, False)
    assert result.error == "exit status 4: no route to pager"


async def test_a_child_left_in_the_hooks_group_dies_at_the_timeout(
    start_hooks: Start, tmp_path: Path
) -> None:
    """Not detached: the run ends with the hook, the child at the hook's timeout."""
    pidfile = tmp_path / "child.pid"
    done = tmp_path / "done"
    hook = script(tmp_path / "leave.sh", f"sleep 30 &\necho $! > {pidfile}\nexit 0\n")
    after = script(tmp_path / "after.sh", f"touch {done}\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)],
                                          "timeout_s": 3},
                                         {"event": "vm-online", "command": [str(after)]}],
                                        max_concurrent=1)
    started = time.monotonic()
    runner.fire_online("a", INFO)
    await until(done.exists)
    assert time.monotonic() - started < 2.5  # not held until the timeout
    child = int(pidfile.read_text())
    assert alive(child)
    await until(lambda: gone(child), timeout_s=8)
    assert 2.9 < time.monotonic() - started < 7
    assert results == []


async def test_control_characters_in_stderr_are_replaced(start_hooks: Start, tmp_path: Path
                                                         ) -> None:
    hook = script(tmp_path / "nul.sh", "printf 'bad\\000th\\033[31ming\\r\\n' >&2\nexit 1\n")
    runner, results = await start_hooks([{"event": "vm-online", "command": [str(hook)]}])
    runner.fire_online("a", INFO)
    [(_, _, _, result)] = await until(lambda: results)
    assert result.error == "exit status 1: bad\ufffdth\ufffd[31ming\ufffd"


async def test_vm_offline_runs_first_at_stop_on_workers_of_its_own(
    start_hooks: Start, tmp_path: Path
) -> None:
    """A backlog of slow hooks and a busy pool: ``finish`` still runs every vm-offline
    hook at once (it ran for 0 of 1 VMs: queued behind the backlog)."""
    out = tmp_path / "out"
    out.mkdir()
    slow = script(tmp_path / "slow.sh", "sleep 8\n")
    runner, results = await start_hooks([
        {"event": "blockers-changed", "command": [str(slow)]},
        {"event": "vm-offline", "command": [str(recorder_hook(tmp_path)), str(out)]},
    ], max_concurrent=1, timeout_s=10)
    for n in range(4):
        runner.fire_body("blockers-changed", f"vm{n}", b"{}")
    await asyncio.sleep(0.3)  # the only worker is busy with a slow hook
    runner.fire_offline("a")  # fired before the stop: promoted by finish
    runner.stopping()
    runner.fire_offline("b")
    started = time.monotonic()
    finished = await runner.finish(3)
    assert finished is False  # the slow backlog is still there: reported, not run
    assert time.monotonic() - started < 4
    docs = {d["env"]["QMPDIRTY_VM"]: json.loads(d["stdin"]) for d in records(out)}
    assert sorted(docs) == ["a", "b"]
    assert docs["a"]["reason"] == "session-ended" and docs["b"]["reason"] == "daemon-stopping"
    assert results == []


async def test_stopping_the_runner_kills_what_finished_hooks_left(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path / "leave.sh", f"sleep 60 &\necho $! > {pidfile}\nexit 0\n")
    cfg = Config(hook=[{"event": "*", "command": [str(hook)]}], host={"name": "h"})
    runner = HookRunner(cfg, lambda *_: None)
    task = asyncio.create_task(runner.run())
    runner.fire_online("a", INFO)
    child = int(await until(lambda: pidfile.exists() and pidfile.read_text().strip()))
    await until(lambda: runner.queued == 0 and runner.started_total == 1)
    await asyncio.sleep(0.3)  # the hook has exited; its child runs on (timeout 10 s)
    assert alive(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: gone(child), timeout_s=3)
