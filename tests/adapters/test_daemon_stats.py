"""The ``daemon`` topic (``daemon.app.publish_stats``) against a recording sink: right
from the first connect and whenever the VM counts change, at most once per tick, and
not again while nothing changes (B7)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from qmpdirty.daemon.app import publish_stats
from qmpdirty.daemon.vm import Context, VmRecord
from qmpdirty.decisions.migration.forecaster import Forecaster
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.sinks.outbox import Outbox
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.topics import Topics
from tests.adapters.pipeline_harness import config

TICK_S = 0.05


@dataclass
class Sink:
    outbox: Outbox = field(default_factory=lambda: Outbox(10))
    connects: int = 0
    sent: list[Outgoing] = field(default_factory=list)

    def publish(self, msg: Outgoing) -> None:
        self.sent.append(msg)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.sent]


async def test_daemon_topic_follows_connects_and_vm_counts_at_most_once_a_tick() -> None:
    cfg = config()
    sink = Sink()
    ctx = Context(cfg, sink, Topics.create("qmpdirty", "h1"), CommandPolicy())
    due = asyncio.Event()
    task = asyncio.create_task(publish_stats(sink, ctx, 1.0, due, tick_s=TICK_S,
                                             refresh_s=60.0))
    try:
        await asyncio.sleep(3 * TICK_S)
        assert len(sink.sent) == 1  # at start, then nothing while nothing changes
        sink.connects = 1  # the first connect
        await asyncio.sleep(3 * TICK_S)
        ctx.vms["a"] = VmRecord("a", Forecaster(cfg.forecast), state="online")
        ctx.vms["b"] = VmRecord("b", Forecaster(cfg.forecast))  # offline: known only
        await asyncio.sleep(3 * TICK_S)
        ctx.vms["b"].state = "online"
        await asyncio.sleep(3 * TICK_S)
        due.set()  # an outbox overflow
        await asyncio.sleep(3 * TICK_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    figures = [(p["seq"], p["mqtt_connects"], p["vms_known"], p["vms_online"])
               for p in sink.payloads()]
    assert figures == [(1, 0, 0, 0), (2, 1, 0, 0), (3, 1, 2, 1), (4, 1, 2, 2), (5, 1, 2, 2)]
    assert all(m.topic == "qmpdirty/h1/daemon" and m.retain for m in sink.sent)
