"""The daemon's tracking and blockers topics for real QEMUs without VFIO devices.

A read-write vvfat drive makes QEMU report migration blockers that qmpdirty does
not model: they must be published verbatim as ``unmodelled``, make the VM
unmigratable and leave ``agree`` null: nothing VFIO-related was predicted or
observed, so no agreement is claimed (first-use review B6). QEMU <= 10.2 emits
no DEVICE_ADDED event, so a hot-plugged device is found by the periodic refresh:
an ivshmem-plain in peer mode adds a blocker, and a new ``blockers`` appears. On a
host with nothing bound to VFIO, at the shipped ``[vfio]`` defaults, such a hot-plug
shows within ``hotplug_poll_s`` (the poll asks QEMU's blocked-reasons), not at the
60 s refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Received, Recorder


def _payloads(rec: Recorder, vm: str, kind: str) -> list[Received]:
    return [m for m in rec.snapshot() if m.topic == vm_topic(vm, kind)]


def test_vvfat_blocker_published_verbatim_and_hotplug_reevaluates(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    fat = tmp_path / "fat"
    fat.mkdir()
    (fat / "readme.txt").write_text("vvfat\n")
    qmp, ctl = sock(tmp_path, "vv"), sock(tmp_path, "vvctl")
    vm = lab_vm(QemuSpec(name="vv", qmp_servers=(qmp, ctl), rate_mib=0, extra_args=(
        "-M", "q35", "-drive", f"file=fat:rw:{fat},format=raw,if=none,id=v0",
        "-device", "virtio-blk-pci,drive=v0,id=blk0", "-device", "intel-iommu,caching-mode=on",
        "-device", "pcie-root-port,id=rp1,chassis=1",
        "-object", "memory-backend-ram,id=shm0,size=1M")))
    vm.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        vfio={"refresh_interval_s": 1.0, "debounce_s": 0.1})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        blockers = recorder.wait_for(lambda _m: _payloads(recorder, "vv", "blockers"), 20,
                                     "blockers")[-1].json
        with QmpControl(ctl) as control:
            observed = control.cmd("query-migrate")
            assert isinstance(observed, dict)
            reasons = observed["blocked-reasons"]
            assert blockers["observed"] == reasons  # verbatim, in QEMU's order
            assert any("vvfat (rw)" in r for r in reasons)
            assert blockers["unmodelled"] == reasons and blockers["predicted"] == []
            assert blockers["agree"] is None and blockers["migratable"] is False
            assert blockers["unknown_facts"] == []
            tracking = _payloads(recorder, "vv", "tracking")[-1].json
            assert tracking["devices"] == [] and tracking["complete"] is True
            assert tracking["qemu_version"].startswith("10.")

            time.sleep(1.5)  # a refresh or two with nothing new
            assert len(_payloads(recorder, "vv", "blockers")) == 1  # published on change only
            control.cmd("device_add", driver="ivshmem-plain", memdev="shm0", id="shm", bus="rp1")
            after = control.cmd("query-migrate")
            assert isinstance(after, dict)
            latest = recorder.wait_for(
                lambda _m: [b.json for b in _payloads(recorder, "vv", "blockers")
                            if b.json["observed"] == after["blocked-reasons"]], 10,
                "blockers after hot-plug")[-1]
        assert len(after["blocked-reasons"]) == len(reasons) + 1
        assert latest["agree"] is None and latest["unmodelled"] == after["blocked-reasons"]
        assert "VFIO evaluation failed" not in daemon.log()
    finally:
        daemon.stop()
        daemon.close()


def test_a_blocking_hot_plug_shows_within_the_poll_on_a_host_without_vfio(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    sysfs = tmp_path / "sys"
    (sysfs / "bus" / "pci" / "drivers" / "nvme").mkdir(parents=True)  # nothing VFIO
    qmp, ctl = sock(tmp_path, "hp"), sock(tmp_path, "hpctl")
    vm = lab_vm(QemuSpec(name="hp", qmp_servers=(qmp, ctl), rate_mib=0, extra_args=(
        "-M", "q35", "-device", "pcie-root-port,id=rp1,chassis=1",
        "-object", "memory-backend-ram,id=shm0,size=1M")))
    vm.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}], host={"sysfs_root": str(sysfs)})
    assert "vfio" not in table  # the shipped defaults: refresh 60 s, poll 5 s
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        first = recorder.wait_for(lambda _m: _payloads(recorder, "hp", "blockers"), 20,
                                  "blockers")[-1].json
        with QmpControl(ctl) as control:
            control.cmd("device_add", driver="ivshmem-plain", memdev="shm0", id="shm", bus="rp1")
            plugged = time.monotonic()
            after = control.cmd("query-migrate")
        assert isinstance(after, dict)
        reasons = after["blocked-reasons"]
        assert len(reasons) == len(first["observed"]) + 1
        # the first refresh comes 30-90 s after the first evaluation: only the poll is
        # this quick (within 5 s, plus the evaluation on a loaded host)
        latest = recorder.wait_for(
            lambda _m: [b.json for b in _payloads(recorder, "hp", "blockers")
                        if b.json["observed"] == reasons], 12, "blockers after hot-plug")[-1]
        assert time.monotonic() - plugged < 12
        assert latest["migratable"] is False and latest["unmodelled"] == reasons
        assert "VFIO evaluation failed" not in daemon.log()
    finally:
        daemon.stop()
        daemon.close()
