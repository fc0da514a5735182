"""The daemon's own lifecycle and VM presence, on real QEMU and mosquitto, via the CLI."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import PREFIX, DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder


def test_daemon_online_then_offline_on_sigterm(
    broker: Mosquitto, recorder: Recorder, tmp_path: Path
) -> None:
    daemon = DaemonProcess(tmp_path, base_config(broker)).start()
    try:
        recorder.wait_text(f"{PREFIX}/status", "online", 15)
        stats = recorder.wait_for(lambda ms: [m for m in ms if m.topic == f"{PREFIX}/daemon"])
        assert stats[0].json["outbox"]["capacity"] == 10_000
        code, took = daemon.stop()
    finally:
        daemon.close()
    assert code == 0, daemon.log()
    assert took < 5.0 + 1.0
    last = recorder.last(f"{PREFIX}/status")
    assert last is not None and last.text == "offline"


def test_vm_offline_within_2s_of_kill_and_back_online_client_mode(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    qmp = sock(tmp_path, "vm1")
    spec = QemuSpec(name="vm1", qmp_servers=(qmp,), rate_mib=4)
    vm = lab_vm(spec)
    vm.wait_qmp()
    daemon = DaemonProcess(tmp_path, base_config(broker, vm=[{"qmp": f"unix:{qmp}"}])).start()
    try:
        recorder.wait_text(vm_topic("vm1", "status"), "online", 20)
        info = recorder.wait_for(lambda ms: [m for m in ms if m.topic == vm_topic("vm1", "info")])
        assert info[-1].json["qemu_version"].startswith("10.")
        assert info[-1].json["migration_events"] is True  # the daemon turned `events` on

        killed_at = time.time()
        vm.kill(signal.SIGKILL)
        offline = recorder.wait_text(vm_topic("vm1", "status"), "offline", 5, after=killed_at)
        assert offline.at - killed_at <= 2.0, f"offline after {offline.at - killed_at:.2f}s"

        restarted_at = time.time()
        again = lab_vm(QemuSpec(name="vm1", qmp_servers=(qmp,), rate_mib=4))
        again.wait_qmp()
        recorder.wait_text(vm_topic("vm1", "status"), "online", 20, after=restarted_at)
        # seq keeps increasing across the reconnect within one daemon run
        seqs = [m.json["seq"] for m in recorder.on(vm_topic("vm1", "info"))]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finally:
        daemon.stop()
        daemon.close()


def test_vm_offline_within_2s_of_kill_and_back_online_server_mode(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    listen = sock(tmp_path, "server")
    control = sock(tmp_path, "ctl")
    table = base_config(broker, server={"socket": str(listen), "mode": "0600"})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        recorder.wait_text(f"{PREFIX}/status", "online", 15)
        assert listen.exists() and (listen.stat().st_mode & 0o777) == 0o600
        vm = lab_vm(QemuSpec(name="srv1", dial_socket=listen, qmp_servers=(control,),
                             rate_mib=4))
        recorder.wait_text(vm_topic("srv1", "status"), "online", 20)
        info = recorder.wait_for(lambda ms: [m.json for m in ms
                                             if m.topic == vm_topic("srv1", "info")])
        assert info[-1]["pid"] == vm.pid  # SO_PEERCRED names the QEMU that dialled in
        assert info[-1]["qmp"].startswith("server:")

        killed_at = time.time()
        vm.kill(signal.SIGKILL)
        offline = recorder.wait_text(vm_topic("srv1", "status"), "offline", 5, after=killed_at)
        assert offline.at - killed_at <= 2.0

        restarted_at = time.time()
        lab_vm(QemuSpec(name="srv1", dial_socket=listen, qmp_servers=(control,), rate_mib=4))
        recorder.wait_text(vm_topic("srv1", "status"), "online", 20, after=restarted_at)
    finally:
        daemon.stop()
        daemon.close()


def test_discovery_glob_and_sighup(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    found = sock(tmp_path, "globbed")
    static = sock(tmp_path, "static")
    table = base_config(broker, discovery={"globs": [str(found.parent / "*.sock")],
                                           "rescan_interval_s": 0.5})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        recorder.wait_text(f"{PREFIX}/status", "online", 15)
        vm = lab_vm(QemuSpec(name="globbed", qmp_servers=(found,), rate_mib=4))
        recorder.wait_text(vm_topic("globbed", "status"), "online", 20)
        vm.stop()  # QEMU removes its socket: the VM goes offline and its supervisor ends
        recorder.wait_text(vm_topic("globbed", "status"), "offline", 5)

        lab_vm(QemuSpec(name="static", qmp_servers=(static,), rate_mib=4)).wait_qmp()
        table["vm"] = [{"qmp": f"unix:{static}"}]
        from qmpdirty.demo.lab.daemon_process import write_config

        write_config(daemon.config, table)
        daemon.signal(signal.SIGHUP)
        recorder.wait_text(vm_topic("static", "status"), "online", 20)
    finally:
        daemon.stop()
        daemon.close()
    assert "SIGHUP: 1 static VMs" in daemon.log()


def test_crash_in_one_vm_does_not_stop_others(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """A QMP peer that is not QEMU (garbage instead of a greeting) next to a real VM."""
    import socket
    import threading

    bad = sock(tmp_path, "bad")
    good = sock(tmp_path, "good")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(bad))
    server.listen(8)

    def garbage() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b'{"QMP": {"version": "nonsense"}}\n{not json\n')
            conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    lab_vm(QemuSpec(name="good", qmp_servers=(good,), rate_mib=4)).wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{bad}", "name": "bad"},
                                    {"qmp": f"unix:{good}"}])
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        recorder.wait_text(vm_topic("good", "status"), "online", 20)
        time.sleep(1.0)  # several reconnect attempts of the bad peer
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert recorder.last(vm_topic("good", "status")).text == "online"  # type: ignore[union-attr]
        # the broken peer is published as being in error (issue 6), once, never online
        assert {m.text for m in recorder.on(vm_topic("bad", "status"))} == {"error"}
    finally:
        code, _ = daemon.stop()
        daemon.close()
        server.close()
    assert code == 0
    assert f"unix:{bad}" in daemon.log()
    json.dumps(table)


def test_tcp_client_mode_and_every_vm_offline_on_sigterm(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    from qmpdirty.demo.lab.qemu import free_port

    port = free_port()
    lab_vm(QemuSpec(name="tcpvm", qmp_tcp_port=port, rate_mib=2)).wait_qmp()
    unix = sock(tmp_path, "unixvm")
    lab_vm(QemuSpec(name="unixvm", qmp_servers=(unix,), rate_mib=2)).wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"tcp:127.0.0.1:{port}"}, {"qmp": f"unix:{unix}"}])
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        recorder.wait_text(vm_topic("tcpvm", "status"), "online", 20)
        recorder.wait_text(vm_topic("unixvm", "status"), "online", 20)
        info = recorder.last(vm_topic("tcpvm", "info"))
        assert info is not None and info.json["qmp"] == f"tcp:127.0.0.1:{port}"
        stopped_at = time.time()
        code, _ = daemon.stop()
    finally:
        daemon.close()
    assert code == 0
    for vm in ("tcpvm", "unixvm"):  # SIGTERM: offline for every VM, then the daemon
        recorder.wait_text(vm_topic(vm, "status"), "offline", 5, after=stopped_at)
    assert recorder.last(f"{PREFIX}/status").text == "offline"  # type: ignore[union-attr]


def test_broker_away_overflow_is_counted_and_published(
    lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """Outbox of 3 records, broker absent at start, 10 events: 7 dropped, and said so."""
    from qmpdirty.demo.lab.control import QmpControl
    from qmpdirty.demo.lab.qemu import free_port

    port = free_port()
    qmp, ctl = sock(tmp_path, "ovf"), sock(tmp_path, "ovfctl")
    lab_vm(QemuSpec(name="ovf", qmp_servers=(qmp, ctl), rate_mib=2)).wait_qmp()
    absent = Mosquitto(port=port)  # not started yet: the daemon finds no broker
    table = base_config(absent, vm=[{"qmp": f"unix:{qmp}"}])
    table["mqtt"]["outbox_size"] = 3
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        deadline = time.monotonic() + 20
        while "VM ovf online" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        with QmpControl(ctl) as control:
            for _ in range(5):  # STOP + RESUME: two records each
                control.cmd("stop")
                control.cmd("cont")
        time.sleep(1.5)  # the daemon topic is published at most once a second
        with absent:
            rec = Recorder(port)
            try:
                stats = rec.wait_for(lambda ms: [m.json for m in ms if m.topic.endswith(
                    "/daemon") and m.json["outbox"]["dropped_total"] >= 7], 20, "drop count")
                assert stats[-1]["outbox"]["capacity"] == 3
                rec.wait_text(vm_topic("ovf", "status"), "online", 10)  # state flushed
            finally:
                rec.close()
            daemon.stop()
    finally:
        daemon.close()
    assert "MQTT outbox full (3): dropped" in daemon.log()
