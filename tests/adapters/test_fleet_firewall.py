"""``fleet.run_session`` is the firewall: whatever one VM's session raises stays there,
the VM is published as ``error`` (or ``offline``), its name is freed, and cancellation
always gets through."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from qmpdirty.config.address import QmpAddress
from qmpdirty.daemon import fleet, pipeline
from qmpdirty.daemon.app import policy_from
from qmpdirty.daemon.vm import Context
from qmpdirty.errors import QmpClosedError
from qmpdirty.telemetry.topics import Topics
from tests.adapters.pipeline_harness import (
    VM,
    RecordingPublisher,
    ScriptedVm,
    config,
    online,
    running,
)
from tests.adapters.scripted_qmp import Raw, ScriptedQmp


async def test_a_bug_in_one_pipeline_is_caught_and_published_as_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = RecordingPublisher("qmpdirty/h1", fail_on="/forecast")
    async with running(config(), out=out) as r:
        failure = await asyncio.wait_for(r.task, 5)
    assert failure == "internal error: RuntimeError('publishing " \
        "qmpdirty/h1/vm/vm1/forecast failed')"
    assert "VM task failed; other VMs are unaffected" in caplog.text
    assert r.out.texts(f"{VM}/status") == ["online", "error"]
    assert r.out.json(f"{VM}/error")[0]["reason"] == failure
    assert r.ctx.vms["vm1"].owner is None


async def test_a_peer_that_cannot_be_identified_is_in_error_under_its_fallback_name() -> None:
    async with running(config(), ScriptedVm(name_reply={"name": 42})) as r:
        failure = await asyncio.wait_for(r.task, 5)
    assert failure is not None and failure.startswith("query-name: unexpected reply: name")
    assert r.out.topics() == ["vm/fallback/error", "vm/fallback/status"]
    assert r.out.texts("vm/fallback/status") == ["error"]
    assert r.ctx.vms["fallback"].owner is None


async def test_cancellation_ends_the_session_even_when_a_task_fails_as_it_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon stops (the supervisor is cancelled) while a task fails on its way out,
    e.g. with QEMU's hang-up: the TaskGroup raises the failure in place of the
    cancellation. The supervisor must still end, after publishing ``offline``."""
    async def fails_when_cancelled(_view: object) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise QmpClosedError("QEMU hung up meanwhile") from None

    monkeypatch.setattr(pipeline, "watch_liveness", fails_when_cancelled)
    async with running(config()) as r:
        await online(r)
        r.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(r.task, 5)
    assert r.out.texts(f"{VM}/status") == ["online", "offline"]
    assert r.ctx.vms["vm1"].owner is None


async def test_a_client_mode_peer_that_breaks_differently_each_time_is_one_line(
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    """Issue 12 item 8, client mode: a peer that greets, then sends garbage that differs
    every time, was retried at once (a good greeting reset the backoff) and logged a
    warning per attempt. Now it backs off and its failures make one line per interval."""
    attempts = itertools.count(1)
    vm = ScriptedVm()
    handlers = {**vm.handlers(), "query-version": lambda _a: Raw(
        b'{"return": {not json, attempt %d\r\n' % next(attempts))}
    server = await ScriptedQmp(tmp_path / "q.sock", replies=handlers).start()
    cfg = config(qmp={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.4})
    out = RecordingPublisher("qmpdirty/h1")
    ctx = Context(cfg, out, Topics.create("qmpdirty", "h1"), policy_from(cfg))
    target = fleet.Target(QmpAddress("unix", server.path), "peer", "config")
    try:
        with caplog.at_level(logging.DEBUG, "qmpdirty.daemon.fleet"):
            task = asyncio.create_task(fleet.supervise(ctx, target), name="supervise")
            await asyncio.sleep(3.0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await server.close()
    tried = next(attempts) - 1
    warnings = [r for r in caplog.records
                if r.levelno >= logging.WARNING and r.name == "qmpdirty.daemon.fleet"]
    assert 5 <= tried <= 15, tried  # 0.05, 0.1, 0.2, then every 0.4 s (with jitter)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "attempt 1" in warnings[0].getMessage()
    assert set(out.texts("vm/peer/status")) == {"error"}
