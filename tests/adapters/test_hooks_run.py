"""HookRunner with real subprocesses: stdin and environment, timeout kill, missing
executables, the concurrency limit, VM names that try to inject shell, children that
outlive the hook, stderr with control characters and vm-offline first at stop.

Every test runs under asyncio and under uvloop (the daemon's loop): uvloop hands a
hook's children extra copies of its pipes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.config.load import Config
from qmpdirty.sinks.hooks import HookOutcome, HookRunner
from tests.support.fleet_payloads import info_model

Result = tuple[str, str, tuple[str, ...], HookOutcome]
Start = Callable[..., Awaitable[tuple[HookRunner, list[Result]]]]


#: What ``vm-online`` hooks are handed (their stdin is not what these tests are about).
INFO = info_model("testhost", "a")
#: Both loops (tests/adapters/conftest.py): the daemon runs on uvloop.
EVENT_LOOPS = ("asyncio", "uvloop")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("QMPDIRTY_"):
            monkeypatch.delenv(name)


def script(path: Path, body: str, interpreter: str = "/bin/sh") -> Path:
    path.write_text(f"#!{interpreter}\n{body}")
    path.chmod(0o755)
    return path


def recorder_hook(tmp_path: Path) -> Path:
    """A hook that writes its stdin, environment and argv to ``<out>/<pid>.json``."""
    return script(tmp_path / "record.py", (
        "import json, os, sys\n"
        "doc = {'stdin': sys.stdin.read(), 'env': dict(os.environ), 'argv': sys.argv[1:]}\n"
        "out = os.path.join(sys.argv[1], f'{os.getpid()}.json')\n"
        "with open(out + '.tmp', 'w') as f: json.dump(doc, f)\n"
        "os.rename(out + '.tmp', out)\n"
    ), interpreter=sys.executable)


async def until(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return value


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    tasks: list[asyncio.Task[None]] = []

    async def make(hooks: list[dict[str, Any]], **runner: Any) -> tuple[HookRunner, list[Result]]:
        results: list[Result] = []
        cfg = Config(hook=hooks, hooks=runner, host={"name": "testhost"})
        hook_runner = HookRunner(cfg, lambda *r: results.append(r))
        tasks.append(asyncio.create_task(hook_runner.run()))
        return hook_runner, results

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody has reaped yet)."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


async def test_stdin_environment_and_arguments(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAEMON_SECRET", "hunter2")
    out = tmp_path / "out"
    out.mkdir()
    hook = recorder_hook(tmp_path)
    runner, results = await start([{"event": "migration-status", "command": [str(hook), str(out)]}])
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


async def test_wildcard_and_several_hooks_per_event(start: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = recorder_hook(tmp_path)
    runner, _ = await start([
        {"event": "*", "command": [str(hook), str(out), "star"]},
        {"event": "vm-offline", "command": [str(hook), str(out), "offline"]},
    ])
    runner.fire_offline("a")
    runner.fire_body("blockers-changed", "a", b'{"migratable": false}')
    docs = await until(lambda: len(records(out)) == 3 and records(out))
    seen = sorted((d["env"]["QMPDIRTY_EVENT"], d["argv"][1]) for d in docs)
    assert seen == [("blockers-changed", "star"), ("vm-offline", "offline"),
                    ("vm-offline", "star")]


async def test_timeout_kills_the_hook_and_its_children(start: Start, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path / "slow.sh", f"sleep 60 &\necho $! > {pidfile}\nwait\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)],
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


async def test_missing_and_unusable_executables(start: Start, tmp_path: Path) -> None:
    not_exec = tmp_path / "not-exec"
    not_exec.write_text("#!/bin/sh\nexit 0\n")
    failing = script(tmp_path / "fail.sh", "echo first >&2\necho 'disk full' >&2\nexit 3\n")
    runner, results = await start([
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


async def test_a_hook_that_ignores_stdin_is_fine(start: Start, tmp_path: Path) -> None:
    hook = script(tmp_path / "quick.sh", "exit 0\n")
    done = tmp_path / "done"
    after = script(tmp_path / "after.sh", f"touch {done}\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)]},
                                   {"event": "vm-online", "command": [str(after)]}],
                                  max_concurrent=1)
    runner.fire_online("a", info_model("testhost", "a").model_copy(
        update={"role_reason": "x" * 2_000_000}))
    await until(done.exists)
    await asyncio.sleep(0.1)
    assert results == []


async def test_concurrency_limit(start: Start, tmp_path: Path) -> None:
    log = tmp_path / "times"
    log.mkdir()
    hook = script(tmp_path / "work.sh",
                  f"s=$(date +%s.%N)\nsleep 0.3\necho \"$s $(date +%s.%N)\" > {log}/$$\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)]}],
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


async def test_fire_returns_at_once_while_hooks_run(start: Start, tmp_path: Path) -> None:
    hook = script(tmp_path / "slow.sh", "sleep 2\n")
    runner, _ = await start([{"event": "*", "command": [str(hook)]}], max_concurrent=1,
                            queue_size=5)
    await asyncio.sleep(0)
    began = time.perf_counter()
    for n in range(50):
        runner.fire_body("tracking-changed", f"vm{n}", b'{"n": %d}' % n)
    assert time.perf_counter() - began < 0.05
    assert runner.queued <= 5
    assert runner.dropped_total >= 44


async def test_hostile_vm_name_never_runs_anything(start: Start, tmp_path: Path) -> None:
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
    runner, results = await start([{"event": "*", "command": [str(hook), str(out)]},
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
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, results = await start([{"event": "*", "command": ["/bin/true"]}], max_concurrent=1)
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


def alive(pid: int) -> bool:
    return not gone(pid)


async def test_a_detached_child_does_not_hold_the_hook(start: Start, tmp_path: Path) -> None:
    """docs/hooks.md's recipe, ``setsid cmd >/dev/null 2>&1 &``: the hook is judged by
    its own exit (it was reported as timed out: under uvloop the child kept a copy of
    the hook's stderr, and the runner waited for its end-of-file)."""
    pidfile = tmp_path / "child.pid"
    done = tmp_path / "done"
    hook = script(tmp_path / "detach.sh",
                  f"setsid sleep 30 >/dev/null 2>&1 &\necho $! > {pidfile}\nexit 0\n")
    after = script(tmp_path / "after.sh", f"touch {done}\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)],
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
    start: Start, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path / "detach-fail.sh",
                  f"setsid sleep 30 >/dev/null 2>&1 &\necho $! > {pidfile}\n"
                  "echo 'no route to pager' >&2\nexit 4\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)],
                                    "timeout_s": 5}])
    started = time.monotonic()
    runner.fire_online("a", INFO)
    [(_, _, _, result)] = await until(lambda: results)
    os.kill(int(pidfile.read_text()), 9)
    assert time.monotonic() - started < 2.5
    assert (result.exit_code, result.timed_out) == (4, False)
    assert result.error == "exit status 4: no route to pager"


async def test_a_child_left_in_the_hooks_group_dies_at_the_timeout(
    start: Start, tmp_path: Path
) -> None:
    """Not detached: the run ends with the hook, the child at the hook's timeout."""
    pidfile = tmp_path / "child.pid"
    done = tmp_path / "done"
    hook = script(tmp_path / "leave.sh", f"sleep 30 &\necho $! > {pidfile}\nexit 0\n")
    after = script(tmp_path / "after.sh", f"touch {done}\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)],
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


async def test_control_characters_in_stderr_are_replaced(start: Start, tmp_path: Path) -> None:
    hook = script(tmp_path / "nul.sh", "printf 'bad\\000th\\033[31ming\\r\\n' >&2\nexit 1\n")
    runner, results = await start([{"event": "vm-online", "command": [str(hook)]}])
    runner.fire_online("a", INFO)
    [(_, _, _, result)] = await until(lambda: results)
    assert result.error == "exit status 1: bad\ufffdth\ufffd[31ming\ufffd"


async def test_vm_offline_runs_first_at_stop_on_workers_of_its_own(
    start: Start, tmp_path: Path
) -> None:
    """A backlog of slow hooks and a busy pool: ``finish`` still runs every vm-offline
    hook at once (it ran for 0 of 1 VMs: queued behind the backlog)."""
    out = tmp_path / "out"
    out.mkdir()
    slow = script(tmp_path / "slow.sh", "sleep 8\n")
    runner, results = await start([
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
