"""Faults on real QEMU and mosquitto (issue 6, item 1): kill -9, SIGSTOP, broker restarts."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import (
    QmpControl,
    migrate,
    migrate_incoming,
    set_max_bandwidth,
    wait_for_migration,
)
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm, free_port
from qmpdirty.demo.lab.recorder import Recorder

MIB = 2**20


def _statuses(rec: Recorder, vm: str) -> list[str]:
    return [m.text for m in rec.on(vm_topic(vm, "status"))]


def test_kill_mid_migration_lost_offline_others_unaffected_and_back_online(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    qmp, ctl, other, dctl = (sock(tmp_path, n) for n in ("k", "kctl", "other", "kdst"))
    src = lab_vm(QemuSpec(name="k", qmp_servers=(qmp, ctl), rate_mib=16))
    lab_vm(QemuSpec(name="other", qmp_servers=(other,), rate_mib=2)).wait_qmp()
    lab_vm(QemuSpec(name="kdst", qmp_servers=(dctl,), incoming="defer")).wait_qmp()
    src.wait_ready()
    daemon = DaemonProcess(tmp_path, base_config(
        broker, vm=[{"qmp": f"unix:{qmp}"}, {"qmp": f"unix:{other}"}])).start()
    try:
        for vm in ("k", "other"):
            recorder.wait_text(vm_topic(vm, "status"), "online", 20)
        with QmpControl(ctl) as c, QmpControl(dctl) as d:
            uri = f"tcp:127.0.0.1:{free_port()}"
            migrate_incoming(d, uri)
            set_max_bandwidth(c, 1 * MIB)
            migrate(c, uri)
            recorder.wait_for(lambda ms: [m for m in ms if m.topic == vm_topic("k", "migration")
                                          and m.json["status"] == "active"], 10, "active")
        killed_at = time.time()
        src.kill(signal.SIGKILL)
        summary = recorder.wait_for(lambda ms: [m for m in ms if m.topic == vm_topic(
            "k", "migration/summary")], 5, "summary")[0]
        assert summary.json["outcome"] == "lost" and summary.at - killed_at <= 2.0
        offline = recorder.wait_text(vm_topic("k", "status"), "offline", 5, after=killed_at)
        assert offline.at - killed_at <= 2.0
        time.sleep(1.0)
        assert _statuses(recorder, "other") == ["online"]  # untouched throughout
        back_at = time.time()
        lab_vm(QemuSpec(name="k", qmp_servers=(qmp, ctl), rate_mib=2)).wait_qmp()
        recorder.wait_text(vm_topic("k", "status"), "online", 20, after=back_at)
    finally:
        daemon.stop()
        daemon.close()


def test_sigstop_is_unresponsive_not_offline_and_recovers_on_sigcont(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    qmp = sock(tmp_path, "frozen")
    vm = lab_vm(QemuSpec(name="frozen", qmp_servers=(qmp,), rate_mib=2))
    vm.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        qmp={"command_timeout_s": 1.0, "liveness_interval_s": 1.0},
                        dirty_rate={"enabled": True, "interval_s": 1.0, "window_s": 0.5})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        recorder.wait_text(vm_topic("frozen", "status"), "online", 20)
        stopped_at = time.time()
        vm.send_signal(signal.SIGSTOP)
        unresponsive = recorder.wait_text(vm_topic("frozen", "status"), "unresponsive", 10,
                                          after=stopped_at)
        assert unresponsive.at - stopped_at <= 3.0
        time.sleep(3.0)  # commands keep timing out meanwhile
        resumed_at = time.time()
        vm.send_signal(signal.SIGCONT)
        recorder.wait_text(vm_topic("frozen", "status"), "online", 10, after=resumed_at)
        assert "offline" not in _statuses(recorder, "frozen")  # the session was kept
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        vm.send_signal(signal.SIGCONT)
        daemon.stop()
        daemon.close()
    assert daemon.log().count("unresponsive") == 1  # one clear line, not one per timeout


def test_broker_restarted_ten_times_during_a_long_migration(
    lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """A persistent-session subscriber (clean_start false, QoS 1) on a broker that keeps
    sessions across restarts sees every MIGRATION status once or more, in seq order;
    after each reconnect every retained topic holds the daemon's current state."""
    persist = tmp_path / "mosq"
    persist.mkdir()
    with Mosquitto(extra_config=["persistence true", f"persistence_location {persist}/",
                                 "autosave_interval 1"]) as broker:
        sub = Recorder(broker.port, client_id="persistent-watcher", clean=False)
        qmp, ctl, dctl = (sock(tmp_path, n) for n in ("long", "longctl", "longdst"))
        src = lab_vm(QemuSpec(name="long", qmp_servers=(qmp, ctl), rate_mib=4))
        lab_vm(QemuSpec(name="longdst", qmp_servers=(dctl,), incoming="defer")).wait_qmp()
        src.wait_ready()
        daemon = DaemonProcess(tmp_path, base_config(
            broker, vm=[{"qmp": f"unix:{qmp}"}],
            migration={"poll_interval_s": 0.3})).start()
        try:
            sub.wait_text(vm_topic("long", "status"), "online", 20)
            with QmpControl(ctl) as c, QmpControl(dctl) as d:
                uri = f"tcp:127.0.0.1:{free_port()}"
                migrate_incoming(d, uri)
                set_max_bandwidth(c, 24 * MIB)
                migrate(c, uri)
                for _ in range(10):
                    broker.restart()
                    time.sleep(0.5)
                final = wait_for_migration(c, 120)
                seen_by_qemu = [e["data"]["status"] for e in c.events() if e["event"] ==
                                "MIGRATION"]
            assert final["status"] == "completed"
            sub.wait_for(lambda ms: any(m.topic == vm_topic("long", "event/MIGRATION") and
                                        m.json["data"]["status"] == "completed" for m in ms),
                         30, "the completed event")
            events = [m.json for m in sub.on(vm_topic("long", "event/MIGRATION"))]
            by_seq = sorted({e["seq"]: e["data"]["status"] for e in events}.items())
            assert [s for _, s in by_seq] == seen_by_qemu  # every one, in order, by seq
            fresh = Recorder(broker.port)  # retained state after the last reconnect
            try:
                got = fresh.wait_for(lambda ms: (d := {m.topic: m for m in ms})
                                     and vm_topic("long", "migration") in d and d, 10)
                assert got[vm_topic("long", "migration")].json["status"] == "completed"
                assert got[vm_topic("long", "status")].text == "online"
                assert got[vm_topic("long", "migration/summary")].json["outcome"] == "completed"
            finally:
                fresh.close()
        finally:
            daemon.stop()
            daemon.close()
            sub.close()
