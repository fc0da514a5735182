"""``fleet.run_session`` is the firewall: whatever one VM's session raises stays there,
the VM is published as ``error`` (or ``offline``), its name is freed, and cancellation
always gets through."""

from __future__ import annotations

import asyncio

import pytest

from qmpdirty.daemon import pipeline
from qmpdirty.errors import QmpClosedError
from tests.adapters.pipeline_harness import (
    VM,
    RecordingPublisher,
    ScriptedVm,
    config,
    online,
    running,
)


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
