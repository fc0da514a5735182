"""At most a few sessions start at once (``daemon.starts``; issue 12, item 9): a start
holds its slot until the pipeline has started, and gives it back however it ends."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from qmpdirty.config.address import QmpAddress
from qmpdirty.daemon import fleet
from qmpdirty.daemon.app import policy_from
from qmpdirty.daemon.starts import StartGate
from qmpdirty.daemon.vm import Context
from qmpdirty.telemetry.topics import Topics
from tests.adapters.pipeline_harness import VM, RecordingPublisher, ScriptedVm, config
from tests.adapters.scripted_qmp import ScriptedQmp


async def test_the_gate_lets_so_many_in_and_a_slot_is_given_back_once() -> None:
    gate = StartGate(limit=2)
    first, second = await gate.enter(), await gate.enter()
    third = asyncio.create_task(gate.enter(), name="third")
    await asyncio.sleep(0.01)
    assert not third.done()
    first.release()
    first.release()  # twice: still one slot
    slot = await asyncio.wait_for(third, 1)
    fourth = asyncio.create_task(gate.enter(), name="fourth")
    await asyncio.sleep(0.01)
    assert not fourth.done()
    second.release()
    slot.release()
    (await asyncio.wait_for(fourth, 1)).release()


async def test_a_session_holds_its_slot_until_started_or_ended() -> None:
    gate = asyncio.Event()
    vm = ScriptedVm(status_gate=gate)
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "qmp.sock"
    server = await ScriptedQmp(path, replies=vm.handlers()).start()
    cfg = config()
    out = RecordingPublisher("qmpdirty/h1")
    ctx = Context(cfg, out, Topics.create("qmpdirty", "h1"), policy_from(cfg))
    ctx.starts = StartGate(limit=1)
    target = fleet.Target(QmpAddress("unix", path), "vm1", "config")
    task = asyncio.create_task(fleet.supervise(ctx, target), name="supervise")
    try:
        await out.wait_for(lambda: server.commands[-1:] and
                           server.commands[-1].get("execute") == "query-status", "the start")
        waiting = asyncio.create_task(ctx.starts.enter(), name="next")
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the session is still starting
        gate.set()
        await out.wait_for(lambda: "online" in out.texts(f"{VM}/status"), "online")
        (await asyncio.wait_for(waiting, 1)).release()  # started: the slot came back
        await server.close()  # and a session that ends does not keep one either
        await out.wait_for(lambda: "offline" in out.texts(f"{VM}/status"), "offline")
        (await asyncio.wait_for(ctx.starts.enter(), 1)).release()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
