"""The MQTT sink's promises under faults, through the real daemon (issue 12, items 3-6).

Crashes, broker restarts, a frozen broker and the stop race run real QEMUs and a real
mosquitto; the flood uses fake QMP peers (``RecordedVm``: QEMU 10.0.2's own replies).
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import PREFIX, DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorded import RecordedVm, Recording
from qmpdirty.demo.lab.recorder import Recorder
from tests.support.gate import Gate
from tests.support.seqcheck import backwards

HOST_STATUS = f"{PREFIX}/status"
#: The q35 ICH9 LPC's RTC, the ``qom-path`` of QEMU's RTC_CHANGE events.
LPC_RTC = "/machine/unattached/device[2]/rtc"
CRASH_SITE = Path(__file__).resolve().parent.parent / "support" / "crashsite"


def host_statuses(rec: Recorder, after: float = 0.0) -> list[str]:
    return [m.text for m in rec.snapshot() if m.topic == HOST_STATUS and m.at >= after]


@pytest.fixture
def no_core_dumps() -> Iterator[None]:
    """SIGSEGV must not leave a core file of the daemon in the working directory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    yield
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


# --- item 3: any exit but a clean stop leaves the host offline ------------------------------

CRASHES = {
    "SIGKILL": "kill -9 (also what the OOM killer sends)",
    "SIGSEGV": "a segmentation fault",
    "exception": "an exception escaping the daemon's main task (a bug on SIGHUP)",
}


def test_any_crash_leaves_the_host_offline_at_once(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path,
    no_core_dumps: None,
) -> None:
    """Issue 12 item 3: a crash closed the connection cleanly, the broker dropped the
    will, and the host stayed ``online``. Whatever kills it, ``offline`` within 1 s."""
    qmp = sock(tmp_path, "c")
    lab_vm(QemuSpec(name="c", qmp_servers=(qmp,), rate_mib=2)).wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}], mqtt={"keepalive_s": 60})
    for n, crash in enumerate(CRASHES):
        run_dir = tmp_path / f"run{n}"
        run_dir.mkdir()
        env = {"PYTHONPATH": str(CRASH_SITE)} if crash == "exception" else {}
        daemon = DaemonProcess(run_dir, table, env=env).start()
        assert daemon.proc is not None
        try:
            started = time.time()
            recorder.wait_text(vm_topic("c", "status"), "online", 20, after=started)
            recorder.wait_text(HOST_STATUS, "online", 5, after=started)
            crashed_at = time.time()
            daemon.signal(getattr(signal, crash) if crash != "exception" else signal.SIGHUP)
            code = daemon.proc.wait(10)
            offline = recorder.wait_text(HOST_STATUS, "offline", 5, after=crashed_at)
        finally:
            daemon.close()
        assert offline.at - crashed_at < 1.0, f"{CRASHES[crash]}: offline after " \
            f"{offline.at - crashed_at:.1f}s (keepalive 60 s: only the will explains < 1 s)"
        if crash == "exception":
            assert code == 1 and "injected: a bug on SIGHUP" in daemon.log(), daemon.log()
        else:
            assert code == -getattr(signal, crash), (crash, code)


# --- item 4: one noisy VM cannot silence the others -----------------------------------------

QUIET_EVENTS = 42
FLOOD_PER_S = 20_000


async def flood(vm: RecordedVm, seconds: float) -> int:
    """``FLOOD_PER_S`` events for ``seconds``, in 10 ms bursts; returns how many."""
    sent, started = 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * FLOOD_PER_S)
        for _ in range(due - sent):
            vm.emit("RTC_CHANGE", {"offset": sent, "qom-path": LPC_RTC})
            sent += 1
        await asyncio.sleep(0.01)
    return sent


async def trickle(vm: RecordedVm, seconds: float) -> None:
    for n in range(QUIET_EVENTS):
        vm.emit("RTC_CHANGE", {"offset": n, "qom-path": LPC_RTC})
        await asyncio.sleep(seconds / QUIET_EVENTS)


async def outage(gate: Gate, after_s: float, for_s: float) -> None:
    await asyncio.sleep(after_s)
    await gate.shut()
    await asyncio.sleep(for_s)
    await gate.open()


async def test_a_noisy_vm_cannot_silence_the_others(broker: Mosquitto, tmp_path: Path) -> None:
    """Issue 12 item 4: with one VM emitting 20,000 events/s, only 36 of the 126 events
    of three quiet VMs were delivered. Every quiet event arrives, through a healthy
    broker and through a 2 s outage in the middle of the flood; drops are the noisy
    VM's own, and counted for it on the ``daemon`` topic."""
    gate = Gate(broker.port)
    await gate.open()
    rec = Recording()
    vms = [RecordedVm(i, rec) for i in range(4)]  # vm-0 floods, vm-1..3 are quiet
    for vm in vms:
        await vm.qmp.listen(sock(tmp_path, vm.name))
    quiet = [Recorder(broker.port, vm_topic(vm.name, "event/#")) for vm in vms[1:]]
    stats = Recorder(broker.port, f"{PREFIX}/daemon")
    online = Recorder(broker.port, f"{PREFIX}/vm/+/status")
    table = base_config(broker, vm=[{"qmp": f"unix:{vm.qmp.paths[0]}"} for vm in vms],
                        mqtt={"url": gate.url, "outbox_size": 2000}, vfio={"enabled": False})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        await online.until(lambda ms: len({m.topic for m in ms if m.text == "online"}) == 4,
                           20, "4 VMs online")
        async with asyncio.TaskGroup() as tg:
            flooding = tg.create_task(flood(vms[0], 6.0), name="flood")
            for vm in vms[1:]:
                tg.create_task(trickle(vm, 5.0), name=f"trickle-{vm.name}")
            tg.create_task(outage(gate, 2.0, 2.0), name="outage")
        got = await quiet[0].until(lambda _ms: all(len(q.snapshot()) >= QUIET_EVENTS
                                                   for q in quiet), 30, "every quiet event")
        assert got
        counted = await stats.until(lambda ms: [m.json["outbox"] for m in ms if
                                                m.json["outbox"]["dropped_total"]], 10, "drops")
        await asyncio.to_thread(daemon.stop)
    finally:
        daemon.close()
        await gate.shut()
        for r in (*quiet, stats, online):
            r.close()
        for vm in vms:
            await vm.qmp.close()
    for vm, q in zip(vms[1:], quiet, strict=True):
        offsets = sorted(m.json["data"]["offset"] for m in q.snapshot())
        assert offsets == list(range(QUIET_EVENTS)), vm.name
    assert flooding.result() >= 6 * FLOOD_PER_S * 0.9  # the flood really was 20,000/s
    assert set(counted[-1]["dropped_by_vm"]) == {"vm-0"}, counted[-1]


def wait_log(daemon: DaemonProcess, text: str, timeout_s: float, times: int = 1) -> None:
    deadline = time.monotonic() + timeout_s
    while daemon.log().count(text) < times:
        assert time.monotonic() < deadline, f"no {text!r} in:\n{daemon.log()}"
        time.sleep(0.05)


# --- item 5: seq never goes backwards for a VM ----------------------------------------------

RESTARTS = 20


def churn(ctl: Path, stop: threading.Event) -> None:
    """STOP and RESUME events, and an ``info`` update after each, as fast as QEMU answers."""
    with QmpControl(ctl) as control:
        while not stop.is_set():
            control.cmd("stop")
            control.cmd("cont")
            control.events()  # drop ours: the daemon has its own monitor
            time.sleep(0.01)


def test_seq_never_goes_backwards_across_twenty_broker_restarts(
    lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """Issue 12 item 5: after a reconnect, state re-sent first with its newest ``seq``
    made the records queued during the outage arrive after a higher ``seq`` (1,960 in 20
    restarts). A persistent subscriber on a persistent broker sees, per VM, nothing new
    after a higher ``seq`` (tests/support/seqcheck.py says exactly what is checked)."""
    persist = tmp_path / "mosq"
    persist.mkdir()
    with Mosquitto(extra_config=["persistence true", f"persistence_location {persist}/",
                                 "autosave_interval 1"]) as broker:
        sub = Recorder(broker.port, client_id="seq-watcher", clean=False)
        qmp, ctl = sock(tmp_path, "s"), sock(tmp_path, "sctl")
        lab_vm(QemuSpec(name="s", qmp_servers=(qmp, ctl), rate_mib=2)).wait_qmp()
        daemon = DaemonProcess(tmp_path, base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                                                     mqtt={"reconnect_max_s": 0.3})).start()
        stop = threading.Event()
        churning = threading.Thread(target=churn, args=(ctl, stop), name="churn")
        try:
            sub.wait_text(vm_topic("s", "status"), "online", 20)
            churning.start()
            for n in range(RESTARTS):
                broker.restart()  # records and state changes queue meanwhile
                wait_log(daemon, "MQTT connected", 10, times=n + 2)
                time.sleep(random.uniform(0.1, 0.3))
            stop.set()
            churning.join(10)
            last_seq = sub.wait_for(lambda ms: [m for m in ms if m.topic == vm_topic(
                "s", "event/RESUME")], 10)[-1].json["seq"]
            time.sleep(1.0)  # whatever was still queued reaches the watcher
        finally:
            stop.set()
            daemon.stop()
            daemon.close()
            sub.close()
    assert backwards(sub.snapshot()) == []
    events = [m for m in sub.snapshot() if "/event/" in m.topic]
    assert len(events) > 4 * RESTARTS and last_seq > 0
    assert daemon.log().count("MQTT connected") == RESTARTS + 1


# --- item 6: a clean stop after broker faults delivers ``offline`` ---------------------------


def retained(port: int) -> dict[str, str]:
    """What a new subscriber gets: the broker's retained status topics."""
    rec = Recorder(port)
    try:
        time.sleep(0.5)
        return {m.topic: m.text for m in rec.snapshot() if m.topic.endswith("status")}
    finally:
        rec.close()


def test_connects_abandoned_while_the_broker_was_frozen_never_take_over(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """Issue 12 item 6: connect attempts that timed out while the broker was frozen
    (SIGSTOP) kept their socket; the broker read them on waking and they took the session
    over ("Session taken over"), their wills saying ``offline``. Then SIGTERM: every VM
    and the host ``offline``, within the deadline."""
    qmp = sock(tmp_path, "fz")
    lab_vm(QemuSpec(name="fz", qmp_servers=(qmp,), rate_mib=2)).wait_qmp()
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)
    daemon = DaemonProcess(tmp_path, base_config(broker, vm=[{"qmp": f"unix:{qmp}"}])).start()
    try:
        wait_log(daemon, "VM fz online", 20)
        wait_log(daemon, "Operation timed out", 15)  # the first attempt gave up, CONNECT sent
        thawed = time.time()
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    try:
        recorder.wait_text(vm_topic("fz", "status"), "online", 15, after=thawed)
        time.sleep(1.0)  # a stale session would have been taken over by now
        assert host_statuses(recorder, after=thawed) == ["online"]
        code, took = daemon.stop()
    finally:
        daemon.close()
    assert code == 0 and took < 5.0 + 1.0, daemon.log()
    assert retained(broker.port) == {HOST_STATUS: "offline", vm_topic("fz", "status"): "offline"}
    assert "not delivered" not in daemon.log() and "taken over" not in daemon.log()


def test_sigterm_right_after_the_broker_returns_delivers_offline(
    broker: Mosquitto, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """Issue 12 item 6: after an outage the sink slept up to ``reconnect_max_s`` between
    attempts; a SIGTERM just after the broker came back logged "messages not delivered"
    and left the VM ``online``. A stop tries the broker at once, and again every 0.2 s."""
    qmp = sock(tmp_path, "rt")
    lab_vm(QemuSpec(name="rt", qmp_servers=(qmp,), rate_mib=2)).wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}], mqtt={"reconnect_max_s": 3.0},
                        daemon={"shutdown_deadline_s": 2.0})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        wait_log(daemon, "VM rt online", 20)
        broker.stop()
        wait_log(daemon, "retrying in 3.0s", 15)  # the backoff at its longest: 2.4-3.6 s
        broker.start()
        code, took = daemon.stop()
    finally:
        daemon.close()
    assert code == 0 and took < 2.0 + 1.0, daemon.log()
    assert retained(broker.port) == {HOST_STATUS: "offline", vm_topic("rt", "status"): "offline"}
    assert "not delivered" not in daemon.log()
