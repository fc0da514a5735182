"""One VM's events through its pipeline (``pipeline_harness``): published the moment
they are read, also while the VM's session starts; what cannot be read or published,
or what a full queue dropped, counted while the session carries on (issue 12, items 8
and 9)."""

from __future__ import annotations

import asyncio
import json

from qmpdirty.telemetry.render import Outgoing
from tests.adapters.pipeline_harness import VM, ScriptedVm, config, online, running

HUGE_INT = "9" * 5000  # Python's json reads at most 4,300 digits
TOO_DEEP = "[" * 5000 + "]" * 5000  # past the recursion limit
RTC = {"offset": 1, "qom-path": "/machine/unattached/device[2]/rtc"}


def _raw_event(name: str, value: str) -> bytes:
    return (f'{{"timestamp": {{"seconds": 1795000000, "microseconds": 1}}, "event": "{name}", '
            f'"data": {{"v": {value}}}}}\r\n').encode()


async def test_events_are_published_while_the_vm_starts_and_acted_on_after() -> None:
    gate = asyncio.Event()
    async with running(config(), ScriptedVm(status_gate=gate)) as r:
        await r.out.wait_for(lambda: r.sent("query-status"), "the start's query-status")
        await r.server.emit("RTC_CHANGE", RTC)
        await r.server.emit("STOP")
        await r.out.wait_for(lambda: r.out.on(f"{VM}/event/STOP"), "STOP while starting")
        assert r.out.topics() == [f"{VM}/event/RTC_CHANGE", f"{VM}/event/STOP"]
        assert len(r.sent("query-status")) == 1  # no reaction yet: the VM has not started
        gate.set()
        await online(r)
        # the STOP is acted on once started: the run state is read again
        await r.out.wait_for(lambda: len(r.sent("query-status")) == 2, "the STOP's refresh")
        seqs = [e["seq"] for kind in ("event/RTC_CHANGE", "event/STOP", "info")
                for e in r.out.json(f"{VM}/{kind}")[:1]]
        assert seqs == sorted(seqs)
        await r.hang_up()


async def test_unreadable_events_are_counted_and_the_session_carries_on() -> None:
    async with running(config()) as r:
        await online(r)
        await r.server.emit("RESUME")
        await r.server.emit_raw(_raw_event("HUGE", HUGE_INT))
        await r.server.emit_raw(_raw_event("DEEP", TOO_DEEP))
        await r.server.emit("RTC_CHANGE", {"deep": _nested(300)})  # readable, not publishable
        await r.server.emit_raw(_raw_event("SURROGATE", '"\\ud800"'))
        await r.server.emit_raw(b'{"event": 5}\r\n')  # not an event's shape
        await r.server.emit("STOP")
        await r.out.wait_for(lambda: r.out.on(f"{VM}/event/STOP"), "the event after them")
        assert not r.task.done()
        assert [t for t in r.out.topics() if "/event/" in t] == [
            f"{VM}/event/RESUME", f"{VM}/event/STOP"]
        assert r.ctx.losses.unreadable_by_vm == {"vm1": 5}
        stats = r.ctx.losses.stats()
        assert (stats.unreadable_total, stats.dropped_total) == (5, 0)
        assert "error" not in r.out.texts(f"{VM}/status")
        await r.hang_up()
    assert r.out.texts(f"{VM}/status") == ["online", "offline"]


async def test_events_a_full_queue_dropped_are_counted() -> None:
    async with running(config()) as r:  # a session queue of 100 events
        await online(r)
        burst = b"".join(_raw_event("RTC_CHANGE", str(n)) for n in range(1000))
        await r.server.emit_raw(burst)  # read before the pipeline gets a turn
        def accounted() -> list[Outgoing] | None:
            seen = r.out.on(f"{VM}/event/RTC_CHANGE")
            lost = sum(r.ctx.losses.dropped_by_vm.values())
            return seen if len(seen) + lost == 1000 else None

        published = await r.out.wait_for(accounted, "every event published or counted")
        dropped = r.ctx.losses.dropped_by_vm["vm1"]
        assert dropped >= 800 and r.ctx.losses.totals == (dropped, 0)
        assert [e["data"]["v"] for e in map(json.loads, (m.payload for m in published))
                ][-1] == 999  # the newest kept, the oldest dropped
        await r.hang_up()


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value
