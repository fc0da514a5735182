"""Role first, through one VM's pipeline without QEMU (``pipeline_harness``): what a
destination, a paused guest, a migrating and a migrated-away source, and a blocked VM
publish - and what they do not (README § Role, § Dirty rate, forecast and advice).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from tests.adapters.pipeline_harness import (
    VM,
    VRB,
    Running,
    ScriptedVm,
    config,
    online,
    recorded,
    running,
    status,
)

UUID = "5b0e8c2a-3f7d-4c1e-9a6b-0d2f4e6a8c1e"
DIRTY = {"dirty_rate": {"enabled": True}}


def cleared(r: Running) -> list[int]:
    """Indexes (in all messages) of the empty retained ``dirty_rate`` messages."""
    return [i for i, m in enumerate(r.out.messages)
            if m.topic.endswith(f"{VM}/dirty_rate") and m.payload == b"" and m.retain]


def rates(r: Running) -> list[dict[str, Any]]:
    """The ``dirty_rate`` payloads, clears left out."""
    return [json.loads(m.payload) for m in r.out.on(f"{VM}/dirty_rate") if m.payload]


def forecast_where(r: Running, **match: object) -> list[dict[str, Any]]:
    return [f for f in r.out.json(f"{VM}/forecast")
            if all(f.get(k) == v for k, v in match.items())]


async def test_a_destination_is_not_measured_nor_forecast_and_sends_progress_on_change(
) -> None:
    vm = ScriptedVm(status_reply=status("inmigrate"))
    async with running(config(**DIRTY), vm) as r:
        await online(r)
        first = await r.out.wait_for(lambda: r.out.json(f"{VM}/forecast"), "forecast")
        await asyncio.sleep(0.5)  # 2.5 dirty-rate intervals
        assert r.sent("calc-dirty-rate") == []
        vm.migrate = {"status": "active"}  # all a destination's query-migrate says
        await r.server.emit("MIGRATION", {"status": "active"})
        await r.out.wait_for(lambda: forecast_where(r, reason="receiving an incoming "
                                                               "migration"), "receiving")
        polls = len(r.sent("query-migrate"))
        await r.out.wait_for(lambda: len(r.sent("query-migrate")) > polls + 5, "5 more polls")
        assert r.sent("calc-dirty-rate") == []
        vm.migrate, vm.status_reply = {"status": "completed"}, status("running")
        await r.server.emit("MIGRATION", {"status": "completed"})
        await r.server.emit("RESUME", {})
        await r.out.wait_for(lambda: rates(r), "a measurement once the guest runs")
        await r.hang_up()
    assert (first[0]["verdict"], first[0]["applicable"], first[0]["reason"]) == (
        "not-applicable", False, "waiting for an incoming migration")
    assert first[0]["converges"] is None and first[0]["dirty_bytes_per_s"] is None
    assert [i["role"] for i in r.out.json(f"{VM}/info")] == [
        "incoming-waiting", "incoming-receiving", "running"]
    # no dirty rate while waiting or receiving: the broker's copy is cleared, once
    assert len(cleared(r)) == 1 and cleared(r)[0] < r.out.messages.index(
        r.out.on(f"{VM}/status")[0])
    assert [d["source"] for d in rates(r)] == ["calc-dirty-rate"]
    # progress only when it changed (it never does on a destination), and no forecast
    migrations = r.out.json(f"{VM}/migration")
    assert [(m["status"], m["role"], m["forecast"]) for m in migrations] == [
        ("active", "destination", None), ("completed", "destination", None)]
    assert forecast_where(r, verdict="unknown", applicable=True)  # running: measured next


async def test_a_paused_guest_is_not_measured_and_its_rate_is_cleared() -> None:
    vm = ScriptedVm()
    async with running(config(**DIRTY), vm) as r:
        await online(r)
        await r.out.wait_for(lambda: rates(r), "a measurement")
        vm.status_reply = status("paused")
        await r.server.emit("STOP", {})
        await r.out.wait_for(lambda: forecast_where(r, verdict="not-applicable"), "paused")
        measured = len(r.sent("calc-dirty-rate"))
        await asyncio.sleep(0.6)  # three intervals
        assert len(r.sent("calc-dirty-rate")) == measured
        vm.status_reply = status("running")
        vm.dirty_rate = {**recorded("query-dirty-rate.page-sampling.measured"),
                         "start-time": 1795271600, "dirty-rate": 90}
        await r.server.emit("RESUME", {})
        await r.out.wait_for(lambda: len(rates(r)) == 2, "a measurement after RESUME")
        await r.hang_up()
    paused = forecast_where(r, verdict="not-applicable")[0]
    assert (paused["applicable"], paused["reason"], paused["converges"]) == (
        False, "the guest is paused", None)
    assert [i["role"] for i in r.out.json(f"{VM}/info")] == ["running", "paused", "running"]
    [clear] = cleared(r)
    topics = r.out.topics()
    assert topics[clear - 1] == f"{VM}/info"  # cleared as the role changed
    # QEMU read 84 and 90 MiB/s; the figure adds back half a truncated unit (dirtyrate.combine)
    assert [d["bytes_per_s"] for d in rates(r)] == [84.5 * 2**20, 90.5 * 2**20]


async def test_a_source_sends_its_rate_once_and_leaves_none_retained_after_switchover(
) -> None:
    vm = ScriptedVm(uuid_reply={"UUID": UUID})
    async with running(config(**DIRTY), vm) as r:
        await online(r)
        await r.out.wait_for(lambda: rates(r), "a measurement")
        active = recorded("query-migrate.active-3")  # QEMU has its own rate (16.6 MB/s)
        vm.migrate = {**active, "ram": {**active["ram"], "mbps": 1000.0}}  # 125 MB/s
        await r.server.emit("MIGRATION", {"status": "active"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/migration"), "migration")
        await r.server.emit("MIGRATION_PASS", {"pass": 2})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/migration/pass"), "the pass")
        polls = len(r.sent("query-migrate"))
        await r.out.wait_for(lambda: len(r.sent("query-migrate")) > polls + 5, "5 more polls")
        vm.status_reply = status("finish-migrate")  # the switchover stops the guest
        await r.server.emit("STOP", {})
        await r.out.wait_for(lambda: cleared(r), "the rate cleared at switchover")
        vm.migrate, vm.status_reply = recorded("query-migrate.completed"), status("postmigrate")
        await r.server.emit("MIGRATION", {"status": "completed"})
        await r.out.wait_for(lambda: forecast_where(r, reason="migrated away: the guest now "
                                                              "runs on the destination"), "away")
        await r.hang_up()
    during = [d for d in rates(r) if d["source"] != "calc-dirty-rate"]
    assert [(d["bytes_per_s"], d["mode"], d["source"]) for d in during] == [
        (4047 * 4096, "migration-bitmap", "migration")]  # once, though polled again and again
    assert len(cleared(r)) == 1
    assert not r.out.on(f"{VM}/dirty_rate")[-1].payload  # nothing after it
    assert [i["role"] for i in r.out.json(f"{VM}/info")] == [
        "running", "migrating-out", "migrating-out", "migrated-away"]
    migrations = r.out.json(f"{VM}/migration")
    # unchanged polls publish nothing: the start, the pass, the end
    assert [(m["status"], m["pass"]) for m in migrations] == [
        ("active", 0), ("active", 2), ("completed", 2)]
    forecast = migrations[1]["forecast"]
    assert forecast["passes"] == 1 + forecast["passes_remaining"]  # pass 1 done, 2 under way
    records = [*migrations, *r.out.json(f"{VM}/migration/pass"),
               *r.out.json(f"{VM}/migration/summary")]
    assert {m["uuid"] for m in records} == {UUID}


async def test_a_blocked_vm_is_forecast_blocked_from_its_first_forecast() -> None:
    vm = ScriptedVm(migrate={"blocked-reasons": [VRB]})
    async with running(config(vfio={"enabled": True}), vm) as r:
        await online(r)
        await r.out.wait_for(lambda: r.out.on(f"{VM}/forecast"), "forecast")
        await asyncio.sleep(0.2)
        await r.hang_up()
    topics = r.out.topics()
    assert topics.index(f"{VM}/blockers") < topics.index(f"{VM}/forecast")
    forecasts = r.out.json(f"{VM}/forecast")
    assert [(f["verdict"], f["converges"], f["blockers"]) for f in forecasts] == [
        ("blocked", None, [VRB])]
    assert forecasts[0]["reason"] == f"QEMU refuses to migrate it: {VRB}"
    assert forecasts[0]["eta_s"] is None and forecasts[0]["recommendations"] == []


async def test_the_forecast_heartbeat_starts_again_after_every_publish() -> None:
    interval = 0.4
    vm = ScriptedVm()
    async with running(config(forecast={"publish_interval_s": interval}), vm) as r:
        await online(r)
        await asyncio.sleep(1.0)
        vm.status_reply = status("paused")
        await r.server.emit("STOP", {})  # a material change: published at once
        await r.out.wait_for(lambda: forecast_where(r, verdict="not-applicable"), "paused")
        await asyncio.sleep(1.0)
        await r.hang_up()
    forecasts = r.out.json(f"{VM}/forecast")
    same = [(a, b) for a, b in itertools.pairwise(forecasts) if _content(a) == _content(b)]
    assert len(same) >= 2, "heartbeats"
    assert all(b["ts"] - a["ts"] >= 0.9 * interval for a, b in same), [
        round(b["ts"] - a["ts"], 2) for a, b in same]
    assert len(forecasts) <= 1 + 2.0 / (0.9 * interval) + 1


def _content(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("ts", "seq")}


async def test_a_source_still_in_finish_migrate_at_the_end_is_read_until_postmigrate() -> None:
    """QEMU sends ``completed`` a moment before its run state leaves finish-migrate (seen
    on 10.0.2); ``info`` is read again until it has, so the role ends ``migrated-away``
    rather than staying ``migrating-out`` with no event left to move it."""
    vm = ScriptedVm()
    no_polls = {"poll_interval_s": 60.0, "poll_interval_fast_s": 60.0}
    async with running(config(migration=no_polls), vm) as r:
        await online(r)
        vm.migrate = recorded("query-migrate.active-1")
        await r.server.emit("MIGRATION", {"status": "active"})
        await r.out.wait_for(lambda: [i for i in r.out.json(f"{VM}/info")
                                      if i["role"] == "migrating-out"], "migrating-out")
        vm.migrate = recorded("query-migrate.completed")
        vm.status_reply = status("finish-migrate")
        asked = len(r.sent("query-status"))
        asyncio.get_running_loop().call_later(
            0.35, lambda: setattr(vm, "status_reply", recorded("query-status.postmigrate")))
        await r.server.emit("MIGRATION", {"status": "completed"})
        await r.out.wait_for(lambda: [i for i in r.out.json(f"{VM}/info")
                                      if i["role"] == "migrated-away"], "migrated-away")
        await r.hang_up()
    assert len(r.sent("query-status")) - asked >= 3  # finish-migrate read, then again
    assert r.out.json(f"{VM}/info")[-1]["run_state"] == "postmigrate"
