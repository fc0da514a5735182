"""One VM's pipeline, end to end, without QEMU (``pipeline_harness``): what only the
real-QEMU system tests reached before - events, migrations, dirty rate, liveness, VFIO
re-evaluation, the session's end - checked in order and by content.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from tests.adapters.pipeline_harness import (
    CLOCK_TS,
    VM,
    VRB,
    ScriptedVm,
    config,
    online,
    recorded,
    running,
    status,
)

# --- start and end ---------------------------------------------------------------------


async def test_start_publishes_info_online_and_forecast_then_hang_up_offline() -> None:
    async with running(config()) as r:
        await online(r)
        await r.out.wait_for(lambda: r.out.on(f"{VM}/forecast"), "forecast")
        failure = await r.hang_up()
    assert failure is None
    assert r.out.topics() == [f"{VM}/info", f"{VM}/status", f"{VM}/forecast", f"{VM}/status"]
    info = r.out.json(f"{VM}/info")[0]
    assert CLOCK_TS <= info["ts"] < CLOCK_TS + 5
    assert {k: info[k] for k in ("seq", "host", "vm", "qemu_version", "machine", "accel",
                                 "ram_bytes", "vcpus", "run_state", "migration_events")} == {
        "seq": 1, "host": "h1", "vm": "vm1", "qemu_version": "10.0.2",
        "machine": "pc-i440fx-10.0", "accel": "tcg", "ram_bytes": 134217728, "vcpus": 1,
        "run_state": "running", "migration_events": True}
    assert (info["role"], info["role_reason"]) == ("running", "the guest is running")
    assert info["pid"] == os.getpid()  # client mode: SO_PEERCRED (the server is this process)
    assert r.out.texts(f"{VM}/status") == ["online", "offline"]
    forecast = r.out.json(f"{VM}/forecast")[0]
    # the scripted QEMU reports max-bandwidth 128 MiB/s: QEMU's default, nobody set it
    assert (forecast["seq"], forecast["bandwidth_source"], forecast["downtime_limit_ms"]) == \
        (2, "qemu-default", 300.0)
    assert (forecast["verdict"], forecast["applicable"]) == ("unknown", True)  # not measured
    assert [k for k, _vm, _p in r.hooks.fired] == ["vm-online", "vm-offline"]
    assert r.hooks.of("vm-online")[0] == info
    assert r.hooks.of("vm-offline") == [{}]
    assert r.ctx.vms["vm1"].owner is None  # the name is free again


async def test_event_is_published_verbatim_and_a_run_state_change_refreshes_info() -> None:
    vm = ScriptedVm()
    async with running(config(), vm) as r:
        await online(r)
        vm.status_reply = status("paused")
        await r.server.emit("STOP", {})
        await r.server.emit("BLOCK_IO_ERROR", {"device": "d0", "operation": "write",
                                               "action": "report"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/event/BLOCK_IO_ERROR"), "the 2nd event")
        await r.out.wait_for(lambda: len(r.out.on(f"{VM}/info")) == 2, "info again")
        await r.server.emit("SUSPEND_DISK")  # no data member at all, as QEMU sends it
        await r.out.wait_for(lambda: r.out.on(f"{VM}/event/SUSPEND_DISK"), "the 3rd event")
        await r.hang_up()
    # every event reaches the hook runner as QEMU sent it (its qmp:NAME hooks' stdin)
    stamp = {"seconds": 1795000000, "microseconds": 1}  # the scripted QEMU's clock
    assert [(vm_name, e.raw) for vm_name, e in r.hooks.qmp] == [
        ("vm1", {"event": "STOP", "data": {}, "timestamp": stamp}),
        ("vm1", {"event": "BLOCK_IO_ERROR", "data": {"device": "d0", "operation": "write",
                                                     "action": "report"}, "timestamp": stamp}),
        ("vm1", {"event": "SUSPEND_DISK", "timestamp": stamp})]
    stop = r.out.on(f"{VM}/event/STOP")[0]
    assert (stop.retain, stop.qos, stop.expiry_s) == (False, 1, 3600)
    payload = json.loads(stop.payload)
    assert CLOCK_TS <= payload.pop("ts") < CLOCK_TS + 5
    # the VM's first info came before; a forecast (the role changed) may come in between
    assert payload.pop("seq") > r.out.json(f"{VM}/info")[0]["seq"]
    assert payload == {"schema": 1, "host": "h1", "vm": "vm1", "event": "STOP",
                       "data": {}, "qemu_ts": 1795000000.000001}
    io_error = r.out.json(f"{VM}/event/BLOCK_IO_ERROR")[0]
    assert io_error["data"] == {"device": "d0", "operation": "write", "action": "report"}
    # STOP is a run-state change: info is read and published again; the other is not.
    # Events are published as they come, the reaction to one beside them.
    # (the forecast the pause moves is its own task's, so it is left out here)
    after = [t for t in r.out.topics() if "/event/" in t or t == f"{VM}/info"][1:4]
    assert after in ([f"{VM}/event/STOP", f"{VM}/info", f"{VM}/event/BLOCK_IO_ERROR"],
                     [f"{VM}/event/STOP", f"{VM}/event/BLOCK_IO_ERROR", f"{VM}/info"]), after
    assert r.out.json(f"{VM}/info")[-1]["run_state"] == "paused"
    assert len(r.out.on(f"{VM}/info")) == 2
    assert len(r.sent("query-status")) == 2


async def test_a_run_state_event_that_changes_nothing_publishes_no_info() -> None:
    async with running(config()) as r:
        await online(r)
        await r.server.emit("RESET", {"guest": True, "reason": "guest-reset"})
        await r.out.wait_for(lambda: len(r.sent("query-status")) == 2, "a re-read")
        await r.server.emit("BLOCK_IO_ERROR", {"device": "d0", "operation": "write",
                                               "action": "report"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/event/BLOCK_IO_ERROR"), "the 2nd event")
        await r.hang_up()
    assert len(r.out.on(f"{VM}/info")) == 1


async def test_a_peer_that_breaks_the_protocol_is_published_as_error() -> None:
    vm = ScriptedVm()
    async with running(config(), vm) as r:
        await online(r)
        vm.status_reply = {"status": "paused"}  # no "running": not QEMU's StatusInfo
        await r.server.emit("STOP", {})
        failure = await asyncio.wait_for(r.task, 5)
    assert failure == "query-status: unexpected reply: running: Field required"
    assert r.out.texts(f"{VM}/status") == ["online", "error"]
    error = r.out.json(f"{VM}/error")[0]
    assert (error["reason"], error["qmp"]) == (failure, r.label)
    assert "vm-offline" not in [k for k, _vm, _p in r.hooks.fired]


async def test_a_malformed_query_migrate_is_logged_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vm = ScriptedVm()
    async with running(config(), vm) as r:
        await online(r)
        vm.migrate = {"status": 7}  # one question failed (QmpQueryError), not the session
        await r.server.emit("MIGRATION", {"status": "setup"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/migration"), "migration")
        assert not r.task.done()
        await r.hang_up()
    assert "query-migrate: unexpected reply" in caplog.text
    assert r.out.json(f"{VM}/migration")[0]["status"] == "setup"
    assert r.out.texts(f"{VM}/status") == ["online", "offline"]


# --- migrations ----------------------------------------------------------------------


async def test_migration_events_publish_migration_passes_and_summary() -> None:
    vm = ScriptedVm()
    no_polls = {"poll_interval_s": 60.0, "poll_interval_fast_s": 60.0}  # events only
    async with running(config(migration=no_polls), vm) as r:
        await online(r)

        async def event(name: str, data: dict[str, Any], reply: str, then: str) -> None:
            """QEMU's event, with ``query-migrate`` answering ``reply`` until ``then``."""
            vm.migrate = recorded(f"query-migrate.{reply}")
            count = len(r.out.on(f"{VM}/{then}"))
            await r.server.emit(name, data)
            await r.out.wait_for(lambda: len(r.out.on(f"{VM}/{then}")) > count, then)

        await event("MIGRATION", {"status": "setup"}, "setup", "migration")
        await event("MIGRATION_PASS", {"pass": 1}, "active-1", "migration/pass")
        await event("MIGRATION", {"status": "active"}, "active-2", "migration")
        await event("MIGRATION", {"status": "completed"}, "completed", "migration/summary")
        # the forecast task follows the role on its own: wait for it before hanging up
        await r.out.wait_for(lambda: len(r.out.on(f"{VM}/forecast")) == 3, "the last forecast")
        await r.hang_up()
    migrations = r.out.json(f"{VM}/migration")
    assert [m["status"] for m in migrations] == ["setup", "setup", "active", "completed"]
    assert migrations[-1]["statuses"] == ["setup", "active", "completed"]
    assert [m["pass"] for m in migrations] == [0, 1, 1, 1]
    passes = r.out.json(f"{VM}/migration/pass")
    assert [(p["pass"], p["transferred_bytes"], p["remaining_bytes"]) for p in passes] == [
        (1, 20528254, 97656832)]
    assert r.out.on(f"{VM}/migration/pass")[0].retain is False
    summary = r.out.json(f"{VM}/migration/summary")
    assert [(s["outcome"], s["total_time_ms"], s["downtime_ms"], s["passes"], s["id"])
            for s in summary] == [("completed", 3048, 11, 1, migrations[0]["id"])]
    # each new status fires migration-status once, with that migration payload
    hooked = r.hooks.of("migration-status")
    assert hooked == [migrations[0], migrations[2], migrations[3]]
    # the start and end of a migration move the role: info, and the forecast with it
    assert r.out.topics()[-4:] == [f"{VM}/migration/summary", f"{VM}/info", f"{VM}/forecast",
                                   f"{VM}/status"]
    assert [i["role"] for i in r.out.json(f"{VM}/info")] == [
        "running", "migrating-out", "running"]
    assert [(f["verdict"], f["reason"]) for f in r.out.json(f"{VM}/forecast")] == [
        ("unknown", None), ("not-applicable", "a migration out is under way"),
        ("unknown", None)]


async def test_a_session_that_ends_while_events_wait_sums_up_all_qemu_said() -> None:
    """QEMU announced ``setup`` and ``active`` (both published as events) and died while
    the daemon still polled for ``setup``'s figures: the summary's statuses are both,
    observed without figures, not what the reactions had got to."""
    vm = ScriptedVm()
    scripted = vm.handlers()
    hold = asyncio.Event()

    async def held_migrate(arguments: dict[str, Any]) -> object:
        if hold.is_set():
            await asyncio.sleep(30)  # QEMU is about to die: it never answers
        return scripted["query-migrate"](arguments)

    vm.handlers = lambda: {**scripted, "query-migrate": held_migrate}  # type: ignore[method-assign]
    no_polls = {"poll_interval_s": 60.0, "poll_interval_fast_s": 60.0}
    async with running(config(qmp={"command_timeout_s": 30.0}, migration=no_polls), vm) as r:
        await online(r)
        hold.set()
        await r.server.emit("MIGRATION", {"status": "setup"})
        await r.server.emit("MIGRATION", {"status": "active"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/event/MIGRATION")[1:], "both events")
        await asyncio.sleep(0.1)  # the reactions are waiting for setup's figures
        await r.hang_up()
    summary = r.out.json(f"{VM}/migration/summary")
    assert [(s["outcome"], s["statuses"]) for s in summary] == [("lost", ["setup", "active"])]


async def test_session_end_during_a_migration_reports_it_lost() -> None:
    vm = ScriptedVm()
    async with running(config(), vm) as r:
        await online(r)
        vm.migrate = recorded("query-migrate.active-1")
        await r.server.emit("MIGRATION", {"status": "active"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/migration"), "migration")
        await r.hang_up()
    summary = r.out.json(f"{VM}/migration/summary")
    assert [(s["outcome"], s["statuses"]) for s in summary] == [("lost", ["active"])]
    assert r.out.topics()[-2:] == [f"{VM}/migration/summary", f"{VM}/status"]
    assert r.out.texts(f"{VM}/status")[-1] == "offline"
    assert r.ctx.vms["vm1"].tracker.current is None


# --- dirty rate ------------------------------------------------------------------------


async def test_dirty_rate_is_measured_then_published_and_waits_while_migrating() -> None:
    vm = ScriptedVm()
    async with running(config(dirty_rate={"enabled": True}), vm) as r:
        await online(r)
        rate = await r.out.wait_for(lambda: r.out.json(f"{VM}/dirty_rate"), "dirty_rate")
        # 128 MiB: the budget buys QEMU's maximum per GiB; 4 windows of 50 ms fit in 0.2 s
        assert r.sent("calc-dirty-rate")[:4] == [{"calc-time": 50, "calc-time-unit":
                                                  "millisecond", "mode": "page-sampling",
                                                  "sample-pages": 16384}] * 4
        assert {k: rate[0][k] for k in ("bytes_per_s", "mode", "source", "window_s",
                                        "sample_pages", "windows", "sample_pages_total")} == {
            "bytes_per_s": 84.5 * 2**20, "mode": "page-sampling", "source": "calc-dirty-rate",
            "window_s": 0.5, "sample_pages": 512, "windows": 4, "sample_pages_total": 4 * 64}
        assert r.out.on(f"{VM}/dirty_rate")[0].expiry_s == 60
        vm.migrate = recorded("query-migrate.active-1")
        await r.server.emit("MIGRATION", {"status": "active"})
        await r.out.wait_for(lambda: r.out.on(f"{VM}/migration"), "migration")
        started = len(r.sent("calc-dirty-rate"))
        await asyncio.sleep(0.6)  # three intervals: no measurement while migrating
        assert len(r.sent("calc-dirty-rate")) == started
        vm.migrate = recorded("query-migrate.completed")
        vm.dirty_rate = {**recorded("query-dirty-rate.page-sampling.measured"),
                         "start-time": 1795271600, "dirty-rate": 90}
        await r.server.emit("MIGRATION", {"status": "completed"})
        await r.out.wait_for(lambda: [d for d in r.out.json(f"{VM}/dirty_rate")
                                      if d["bytes_per_s"] == 90.5 * 2**20], "a new dirty_rate")
        await r.hang_up()
    # the same measurement read twice is published once
    published = [d["bytes_per_s"] for d in r.out.json(f"{VM}/dirty_rate")
                 if d["source"] == "calc-dirty-rate"]
    assert published == [84.5 * 2**20, 90.5 * 2**20]  # whole MiB/s + 0.5 (QEMU truncates)


async def test_a_measurement_that_moves_the_forecast_republishes_it_once() -> None:
    """The dirty-rate task tells the forecast task (``claims_changed``); that one alone
    publishes, and only when the claim moved: the same rate measured again is not news."""
    vm = ScriptedVm()
    async with running(config(dirty_rate={"enabled": True}), vm) as r:
        await online(r)
        await r.out.wait_for(lambda: [f for f in r.out.json(f"{VM}/forecast")
                                      if f["dirty_bytes_per_s"]], "a measured forecast")
        vm.dirty_rate = {**recorded("query-dirty-rate.page-sampling.measured"),
                         "start-time": 1795271600}  # the same rate, measured again
        await r.out.wait_for(lambda: len(r.out.on(f"{VM}/dirty_rate")) == 2, "a 2nd rate")
        await asyncio.sleep(0.1)
        await r.hang_up()
    topics = r.out.topics()
    forecasts = r.out.json(f"{VM}/forecast")
    assert [f["dirty_bytes_per_s"] for f in forecasts] == [None, 84.5 * 2**20]
    assert topics.index(f"{VM}/dirty_rate") < len(topics) - 1 - topics[::-1].index(
        f"{VM}/forecast")


# --- liveness --------------------------------------------------------------------------


async def test_a_frozen_qemu_is_unresponsive_then_online_again() -> None:
    vm = ScriptedVm()
    async with running(config(qmp={"liveness_interval_s": 0.1, "command_timeout_s": 0.2}),
                       vm) as r:
        await online(r)
        vm.frozen = True
        await r.out.wait_for(lambda: "unresponsive" in r.out.texts(f"{VM}/status"),
                             "unresponsive")
        vm.frozen = False
        await r.out.wait_for(lambda: r.out.texts(f"{VM}/status")[-1:] == ["online"],
                             "online again")
        await r.hang_up()
    assert r.out.texts(f"{VM}/status") == ["online", "unresponsive", "online", "offline"]
    assert r.out.on(f"{VM}/status")[1].retain is True


# --- VFIO ------------------------------------------------------------------------------


async def test_vfio_is_evaluated_again_after_device_deleted_and_published_if_changed() -> None:
    vm = ScriptedVm(migrate={})
    async with running(config(vfio={"enabled": True}), vm) as r:
        await online(r)
        await r.out.wait_for(lambda: r.out.on(f"{VM}/blockers"), "blockers")

        async def device_deleted(then_blockers: int) -> None:
            reads = len(r.sent("query-migrate"))  # the gather reads blocked-reasons there
            await r.server.emit("DEVICE_DELETED", {"path": "/machine/peripheral/nic0"})
            await r.out.wait_for(lambda: len(r.sent("query-migrate")) > reads, "a re-read")
            await r.out.wait_for(lambda: len(r.out.on(f"{VM}/blockers")) == then_blockers,
                                 f"{then_blockers} blockers")

        vm.migrate = {"blocked-reasons": [VRB]}
        await device_deleted(then_blockers=2)
        await device_deleted(then_blockers=2)  # the same again: nothing published
        vm.migrate = {}
        await device_deleted(then_blockers=3)  # read after the one before had finished
        # four gathers, but the version, machine and RAM are info's: read once, not again
        assert [len(r.sent(c)) for c in ("query-version", "query-memory-size-summary")] == [1, 1]
        assert [a["property"] for a in r.sent("qom-get")] == ["type"] + ["iommu"] * 4
        await r.hang_up()
    blockers = r.out.json(f"{VM}/blockers")
    assert [(b["migratable"], b["observed"], b["unmodelled"]) for b in blockers] == [
        (True, [], []), (False, [VRB], [VRB]), (True, [], [])]
    tracking = r.out.json(f"{VM}/tracking")
    assert [t["devices"] for t in tracking] == [[], [], []]
    assert [b["seq"] - t["seq"] for t, b in zip(tracking, blockers, strict=True)] == [1, 1, 1]
    assert r.out.on(f"{VM}/blockers")[0].retain is True
    assert r.hooks.of("blockers-changed") == blockers[1:]  # not for the session's first
    assert r.hooks.of("tracking-changed") == []  # tracking itself never changed
