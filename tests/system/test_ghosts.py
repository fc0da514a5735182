"""No ghosts (issue 11, item 6), on real QEMU and mosquitto, via the CLI: a VM whose QEMU
died while the daemon was down is offline as soon as the daemon is back; a VM gone for
``forget_after_s`` (removed from the config across a restart, or gone while the daemon
runs) has every retained topic and its Home Assistant device cleared, and nothing else
is touched."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from paho.mqtt import publish

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import PREFIX, DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Received, Recorder
from qmpdirty.telemetry.discovery import ENTITIES, HOST_ENTITIES

HA = "homeassistant"


@pytest.fixture
def everything(broker: Mosquitto) -> Iterator[Recorder]:
    """Every message on the test's broker, Home Assistant's included."""
    rec = Recorder(broker.port, "#")
    yield rec
    rec.close()


def retained(broker: Mosquitto) -> dict[str, bytes]:
    """What the broker retains now, read by a fresh subscriber."""
    rec = Recorder(broker.port, "#")
    try:
        time.sleep(0.5)
        return {m.topic: m.payload for m in rec.snapshot() if m.retain}
    finally:
        rec.close()


def clears(rec: Recorder, vm: str) -> list[Received]:
    """Empty payloads (a retained topic cleared) on ``vm``'s topics or HA device."""
    return [m for m in rec.snapshot() if not m.payload and (
        f"/vm/{vm}/" in m.topic or f"/qmpdirty_testhost/{vm}_" in m.topic)]


def of(found: dict[str, bytes], vm: str, host: str = "testhost") -> set[str]:
    return {t for t in found if t.startswith(f"qmpdirty/{host}/vm/{vm}/")
            or f"/qmpdirty_{host}/{vm}_" in t}


def test_a_vm_whose_qemu_died_while_the_daemon_was_down_is_offline_at_start(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm],
    tmp_path: Path
) -> None:
    died, alive = sock(tmp_path, "died"), sock(tmp_path, "alive")
    dead_vm = lab_vm(QemuSpec(name="died", qmp_servers=(died,), rate_mib=2))
    lab_vm(QemuSpec(name="alive", qmp_servers=(alive,), rate_mib=2)).wait_qmp()
    dead_vm.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{died}"}, {"qmp": f"unix:{alive}"}])
    first = DaemonProcess(tmp_path, table).start()
    try:
        for vm in ("died", "alive"):
            recorder.wait_text(vm_topic(vm, "status"), "online", 20)
    finally:
        first.close()  # SIGKILL: no offline is published, only the host's last will
    recorder.wait_text(f"{PREFIX}/status", "offline", 10)
    assert retained(broker)[vm_topic("died", "status")] == b"online"  # a stale claim
    dead_vm.kill(signal.SIGKILL)

    started = time.time()
    second = DaemonProcess(tmp_path, table).start()
    try:
        offline = recorder.wait_text(vm_topic("died", "status"), "offline", 10, after=started)
        assert offline.at - started <= 5.0, f"offline {offline.at - started:.1f}s after start"
        online = recorder.wait_text(vm_topic("alive", "status"), "online", 20, after=started)
        time.sleep(2.0)
        after = [m.text for m in recorder.on(vm_topic("alive", "status")) if m.at >= online.at]
        assert after == ["online"], "the live VM was marked offline after it came online"
    finally:
        second.stop()
        second.close()
    assert clears(recorder, "died") == []  # forget_after_s (600 s) has not passed
    adopted = [ln for ln in second.log().splitlines() if "but no QMP session" in ln]
    assert len(adopted) == 1 and " died" in adopted[0], adopted  # (alive too, if it was late)


def _has_topic(topic: str) -> Callable[[list[Received]], bool]:
    return lambda ms: any(m.topic == topic for m in ms)


def test_a_vm_removed_from_the_config_is_forgotten_after_forget_after_s_and_only_it(
    broker: Mosquitto, everything: Recorder, lab_vm: Callable[[QemuSpec], QemuVm],
    tmp_path: Path
) -> None:
    kept, dropped = sock(tmp_path, "kept"), sock(tmp_path, "dropped")
    lab_vm(QemuSpec(name="kept", qmp_servers=(kept,), rate_mib=2)).wait_qmp()
    lab_vm(QemuSpec(name="dropped", qmp_servers=(dropped,), rate_mib=2)).wait_qmp()
    foreign = {"qmpdirty/otherhost/vm/dropped/status": b"online",
               f"{HA}/sensor/qmpdirty_otherhost/dropped_dirty_rate/config": b"{}",
               "qmpdirty/testhost/vm/dropped/legacy": b"left by an older version"}
    publish.multiple([{"topic": t, "payload": p, "qos": 1, "retain": True}
                      for t, p in foreign.items()], hostname="127.0.0.1", port=broker.port)
    both = base_config(broker, vm=[{"qmp": f"unix:{kept}"}, {"qmp": f"unix:{dropped}"}],
                       homeassistant={"enabled": True},
                       daemon={"forget_after_s": 2.0})
    first = DaemonProcess(tmp_path, both).start()
    try:
        for vm in ("kept", "dropped"):
            everything.wait_text(vm_topic(vm, "status"), "online", 20)
            # the first forecast follows the first dirty-rate reading; wait for it so that
            # the retained set compared below is complete, not a race with the stop
            everything.wait_for(_has_topic(vm_topic(vm, "forecast")), 30,
                                f"{vm}'s first forecast")
        everything.wait_for(lambda ms: len({m.topic for m in ms if m.topic.startswith(
            f"{HA}/") and "qmpdirty_testhost" in m.topic}) == 2 * len(ENTITIES) +
            len(HOST_ENTITIES), 10, "every HA config of both VMs and of the host")
    finally:
        first.stop()
        first.close()
    before = retained(broker)
    assert len(of(before, "dropped")) >= 10 and len(of(before, "kept")) >= 10

    only_kept = {**both, "vm": [{"qmp": f"unix:{kept}"}]}
    started = time.time()
    second = DaemonProcess(tmp_path, only_kept).start()
    try:
        gone = everything.wait_for(lambda ms: next(
            (m for m in ms if m.topic == vm_topic("dropped", "status") and not m.payload), None),
            15, "dropped's status cleared")
        assert gone.at - started >= 2.0, "forgotten before forget_after_s"
        everything.wait_text(vm_topic("kept", "status"), "online", 20, after=started)
        after = retained(broker)
    finally:
        second.stop()
        second.close()
    assert of(after, "dropped") == set(), of(after, "dropped")  # HA configs and legacy too
    assert of(after, "kept") == of(before, "kept")
    assert {t: after.get(t) for t in foreign if "otherhost" in t} == {
        t: p for t, p in foreign.items() if "otherhost" in t}
    assert clears(everything, "kept") == []
    cleared = {m.topic for m in clears(everything, "dropped")}
    assert of(before, "dropped") <= cleared
    assert "VM dropped forgotten" in second.log()


def test_a_vm_gone_while_the_daemon_runs_is_forgotten_one_back_in_time_is_not(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm],
    tmp_path: Path
) -> None:
    forget_after_s = 5.0
    gone_qmp, back_qmp = sock(tmp_path, "gone"), sock(tmp_path, "back")
    gone = lab_vm(QemuSpec(name="gone", qmp_servers=(gone_qmp,), rate_mib=2))
    back = lab_vm(QemuSpec(name="back", qmp_servers=(back_qmp,), rate_mib=2))
    gone.wait_qmp()
    back.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{gone_qmp}"}, {"qmp": f"unix:{back_qmp}"}],
                        daemon={"forget_after_s": forget_after_s})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        for vm in ("gone", "back"):
            recorder.wait_text(vm_topic(vm, "status"), "online", 20)
        killed = time.time()
        gone.kill(signal.SIGKILL)
        back.kill(signal.SIGKILL)
        lab_vm(QemuSpec(name="back", qmp_servers=(back_qmp,), rate_mib=2)).wait_qmp()
        recorder.wait_text(vm_topic("back", "status"), "online", 20, after=killed)
        offline = recorder.wait_text(vm_topic("gone", "status"), "offline", 5, after=killed)
        cleared = recorder.wait_for(lambda ms: next(
            (m for m in ms if m.topic == vm_topic("gone", "status") and not m.payload), None),
            forget_after_s + 10, "gone's status cleared")
        assert forget_after_s - 0.5 <= cleared.at - offline.at <= forget_after_s + 3
        time.sleep(max(0.0, killed + forget_after_s + 1.5 - time.time()))
        now = retained(broker)
    finally:
        daemon.stop()
        daemon.close()
    assert of(now, "gone") == set()
    assert now[vm_topic("back", "status")] == b"online"
    assert clears(recorder, "back") == []
