"""Home Assistant discovery through the pipeline (``pipeline_harness``' scripted QEMU):
announced once per VM with QEMU's version and machine, again only when a later session
of the same VM finds another QEMU."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from qmpdirty.config.address import QmpAddress
from qmpdirty.daemon import fleet
from qmpdirty.daemon.app import policy_from
from qmpdirty.daemon.vm import Context
from qmpdirty.qmp.session import QmpSession
from qmpdirty.telemetry.discovery import ENTITIES
from qmpdirty.telemetry.topics import Topics
from tests.adapters.pipeline_harness import RecordingPublisher, ScriptedVm, config
from tests.adapters.scripted_qmp import ScriptedQmp


async def one_session(ctx: Context, micro: int) -> None:
    """A session of ``vm1`` on QEMU 10.0.``micro``, until it published ``online``."""
    replies = ScriptedVm().handlers()
    replies["query-version"] = lambda _a: {"qemu": {"major": 10, "minor": 0, "micro": micro},
                                           "package": ""}
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "qmp.sock"
    server = await ScriptedQmp(path, replies=replies).start()
    session = await QmpSession.open(
        QmpAddress("unix", path), policy=ctx.policy, command_timeout_s=0.5,
        connect_timeout_s=2.0, event_queue_size=100, label=f"unix:{path}")
    task = asyncio.create_task(fleet.run_session(ctx, session, f"unix:{path}", "fallback",
                                                 session.peer_pid))
    out = ctx.sink
    assert isinstance(out, RecordingPublisher)
    await out.wait_for(lambda: "vm/vm1/status" in out.topics(), "online")
    await server.close()
    await asyncio.wait_for(task, 5)
    out.messages = [m for m in out.messages if m.topic.startswith("ha/")]


def devices(out: RecordingPublisher) -> list[dict[str, Any]]:
    return [json.loads(m.payload)["device"] for m in out.messages]


async def test_announced_with_qemu_and_machine_and_again_only_when_qemu_changes() -> None:
    cfg = config(homeassistant={"enabled": True, "discovery_prefix": "ha"},
                 dirty_rate={"interval_s": 30.0})
    out = RecordingPublisher("qmpdirty/h1")
    ctx = Context(cfg, out, Topics.create("qmpdirty", "h1"), policy_from(cfg))

    await one_session(ctx, 2)
    first = devices(out)
    assert len(first) == len(ENTITIES)
    assert {(d["sw_version"], d["hw_version"], d["via_device"]) for d in first} == {
        ("QEMU 10.0.2", "pc-i440fx-10.0", "qmpdirty_h1")}
    expire = [json.loads(m.payload).get("expire_after") for m in out.messages]
    assert [e for e in expire if e is not None] == [90]  # 3 x interval_s, the topic's expiry

    out.messages.clear()
    await one_session(ctx, 2)  # the same QEMU again: nothing new to say
    assert out.messages == []

    await one_session(ctx, 3)  # upgraded: the device shows it
    assert {d["sw_version"] for d in devices(out)} == {"QEMU 10.0.3"}
