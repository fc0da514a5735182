"""Forgetting (daemon.forget) on the daemon's own VM table, with a recording publisher and
a clock the test moves; the start-up recall against a real mosquitto."""

from __future__ import annotations

import asyncio
from typing import Any

from paho.mqtt import publish

from qmpdirty.daemon.app import policy_from
from qmpdirty.daemon.forget import Forgetting
from qmpdirty.daemon.vm import Context, SessionOwner, VmPublisher
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.telemetry.discovery import ENTITIES
from qmpdirty.telemetry.ghosts import RememberedVm
from qmpdirty.telemetry.topics import Topics
from tests.adapters.pipeline_harness import RecordingPublisher, config

BASE = "qmpdirty/h1/vm"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def context(**sections: dict[str, Any]) -> tuple[Context, RecordingPublisher, Clock]:
    cfg = config(**sections)
    out, clock = RecordingPublisher("qmpdirty/h1"), Clock()
    ctx = Context(cfg, out, Topics.create("qmpdirty", "h1"), policy_from(cfg),
                  monotonic=clock)
    return ctx, out, clock


def session(ctx: Context, name: str) -> tuple[SessionOwner, VmPublisher]:
    """A session claims ``name`` and publishes ``online`` and one payload."""
    owner = SessionOwner(f"unix:/run/{name}.qmp")
    out = VmPublisher(ctx, ctx.claim(name, owner))
    out.state("online")
    out.stamp()
    return owner, out


def cleared(out: RecordingPublisher, vm: str) -> list[str]:
    return [m.topic for m in out.messages if m.payload == b"" and f"/vm/{vm}/" in m.topic]


def test_a_vm_gone_for_forget_after_s_is_forgotten_one_back_in_time_is_not() -> None:
    ctx, out, clock = context(daemon={"forget_after_s": 60.0})
    forgetting = Forgetting(ctx)
    gone, gone_out = session(ctx, "gone")
    back, back_out = session(ctx, "back")
    session(ctx, "stays")
    ctx.release(gone_out.vm, gone)
    ctx.release(back_out.vm, back)
    clock.now += 30
    assert forgetting.sweep() == 30.0  # the next is due in 30 s
    session(ctx, "back")  # a new session within the window
    clock.now += 30
    assert forgetting.sweep() == 60.0
    assert set(ctx.vms) == {"back", "stays"}
    assert cleared(out, "gone")[-1] == f"{BASE}/gone/status"
    assert len(cleared(out, "gone")) == 9
    assert cleared(out, "back") == cleared(out, "stays") == []
    clock.now += 3600  # a VM with a session is never forgotten, however long it runs
    forgetting.sweep()
    assert set(ctx.vms) == {"back", "stays"}


def test_home_assistant_devices_are_removed_when_discovery_is_on() -> None:
    ctx, out, clock = context(daemon={"forget_after_s": 1.0},
                              homeassistant={"enabled": True, "discovery_prefix": "ha"})
    owner, vm_out = session(ctx, "web1")
    ctx.release(vm_out.vm, owner)
    clock.now += 1
    Forgetting(ctx).sweep()
    ha = [m.topic for m in out.messages if m.topic.startswith("ha/")]
    assert len(ha) == len(ENTITIES) and all("/qmpdirty_h1/web1_" in t for t in ha)
    assert out.messages[-1].topic == f"{BASE}/web1/status"


def test_a_vm_back_after_being_forgotten_continues_its_seq_and_is_announced_again() -> None:
    ctx, _out, clock = context(daemon={"forget_after_s": 1.0})
    owner, first = session(ctx, "web1")
    first.vm.discovery_sent = True
    last_seq = first.vm.seq
    ctx.release(first.vm, owner)
    clock.now += 2
    Forgetting(ctx).sweep()
    assert "web1" not in ctx.vms
    _owner, again = session(ctx, "web1")
    assert again.vm.seq > last_seq and not again.vm.discovery_sent


def test_an_error_vm_is_forgotten_once_its_peer_stopped_answering() -> None:
    ctx, _out, clock = context(daemon={"forget_after_s": 10.0})
    forgetting = Forgetting(ctx)
    for _ in range(3):  # a broken peer, retried: every attempt is a (failed) session
        owner = SessionOwner("unix:/run/bad.qmp")
        vm = ctx.claim("bad", owner)
        VmPublisher(ctx, vm).error("garbage instead of a greeting", owner.label)
        ctx.release(vm, owner)
        clock.now += 8
        forgetting.sweep()
        assert "bad" in ctx.vms  # 8 s since its last attempt, not 10
    clock.now += 2
    forgetting.sweep()
    assert "bad" not in ctx.vms


def test_adopt_takes_only_vms_without_a_record_and_corrects_a_stale_status() -> None:
    ctx, out, clock = context(daemon={"forget_after_s": 5.0})
    forgetting = Forgetting(ctx)
    session(ctx, "live")  # its session came up before the scan ended
    before = len(out.messages)
    found = {name: RememberedVm(name, status, frozenset({f"{BASE}/{name}/status",
                                                          f"{BASE}/{name}/legacy"}))
             for name, status in [("live", "online"), ("died", "online"),
                                  ("stopped", "offline"), ("broken", "error")]}
    assert forgetting.adopt(found) == ["died", "stopped", "broken"]
    assert [(m.topic, m.payload) for m in out.messages[before:]] == [
        (f"{BASE}/died/status", b"offline")]  # nothing for the live VM, once for the dead
    assert (ctx.vms["broken"].state, ctx.vms["died"].state) == ("error", "offline")
    assert ctx.vms["live"].state == "online"
    clock.now += 5
    forgetting.sweep()
    assert set(ctx.vms) == {"live"}
    assert f"{BASE}/died/legacy" in cleared(out, "died")  # what the scan saw, too
    assert cleared(out, "live") == []


async def test_recall_at_start_reads_this_hosts_vms_on_the_broker(broker: Mosquitto) -> None:
    publish.multiple([{"topic": t, "payload": p, "qos": 1, "retain": True} for t, p in {
        f"{BASE}/died/status": b"online", f"{BASE}/died/info": b"{}",
        "qmpdirty/h2/vm/other/status": b"online"}.items()],
        hostname="127.0.0.1", port=broker.port)
    ctx, out, _clock = context(mqtt={"url": broker.url}, daemon={"forget_after_s": 0.0})
    task = asyncio.create_task(Forgetting(ctx).run())
    try:
        await out.wait_for(lambda: out.on("vm/died/status"), "offline for died")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [m.payload for m in out.on("vm/died/status")] == [b"offline"]
    assert set(ctx.vms) == {"died"}  # forget_after_s = 0: never forgotten
    assert all("/h2/" not in m.topic for m in out.messages)
