"""Role first, on real QEMU and mosquitto through the real daemon and ``qmpdirty admit``:
a destination waiting with ``-incoming defer``, a guest paused with ``stop``, a VM that
QEMU refuses to migrate (a read-write vvfat drive), and both ends of a real migration
whose source then quits. What the broker ends up holding must agree with QEMU.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.demo.errors import DemoError
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import (
    QmpControl,
    migrate,
    migrate_incoming,
    set_max_bandwidth,
    wait_for_migration,
)
from qmpdirty.demo.lab.daemon_process import (
    QMPDIRTY,
    DaemonProcess,
    base_config,
    sock,
    vm_topic,
)
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm, free_port
from qmpdirty.demo.lab.recorder import Received, Recorder

pytestmark = pytest.mark.system
MIB = 1 << 20
UUID = "0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
#: measured every 1.5 s over 0.5 s, precise enough for a 256 MiB guest
DIRTY = {"enabled": True, "interval_s": 1.5, "window_s": 0.5, "sample_pages": 16384}
LabVm = Callable[[QemuSpec], QemuVm]


def payloads(recorder: Recorder, vm: str, suffix: str) -> list[Received]:
    return [m for m in recorder.snapshot() if m.topic == vm_topic(vm, suffix)]


def jsons(recorder: Recorder, vm: str, suffix: str) -> list[dict[str, Any]]:
    return [m.json for m in payloads(recorder, vm, suffix) if m.payload]


def latest(recorder: Recorder, vm: str, suffix: str, **match: object
           ) -> Callable[[list[Received]], dict[str, Any] | None]:
    """A predicate: the newest JSON payload on the topic, if it matches ``match``."""
    def check(_msgs: list[Received]) -> dict[str, Any] | None:
        found = jsons(recorder, vm, suffix)
        last = found[-1] if found else None
        return last if last and all(last.get(k) == v for k, v in match.items()) else None
    return check


def admit(daemon: DaemonProcess, vm: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QMPDIRTY, "admit", "--config", str(daemon.config), vm],
                          capture_output=True, text=True, timeout=60, check=False)


def retained(broker: Mosquitto, topic: str, wait_s: float = 1.0) -> list[Received]:
    """What the broker holds on ``topic`` now, as a new subscriber sees it."""
    fresh = Recorder(broker.port, topic)
    try:
        time.sleep(wait_s)
        return [m for m in fresh.snapshot() if m.retain]
    finally:
        fresh.close()


@pytest.fixture
def daemon_for(tmp_path: Path, broker: Mosquitto) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(*socks: Path, **sections: dict[str, object]) -> DaemonProcess:
        table = base_config(broker, vm=[{"qmp": f"unix:{s}"} for s in socks],
                            dirty_rate=DIRTY, **sections)
        daemon = DaemonProcess(tmp_path, table).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        code, _ = daemon.stop()
        daemon.close()
        assert code == 0, daemon.log()


def test_destination_paused_and_blocked_vms_are_neither_measured_nor_admitted(
    lab_vm: LabVm, recorder: Recorder, broker: Mosquitto, tmp_path: Path,
    daemon_for: Callable[..., DaemonProcess],
) -> None:
    d_d, p_d, p_c, f_d = (sock(tmp_path, n) for n in ("dst", "psd", "psc", "fat"))
    fat_dir = tmp_path / "fat"
    fat_dir.mkdir()
    vms = [lab_vm(QemuSpec(name="dst", qmp_servers=(d_d,), incoming="defer")),
           lab_vm(QemuSpec(name="psd", qmp_servers=(p_d, p_c), rate_mib=16)),
           lab_vm(QemuSpec(name="fat", qmp_servers=(f_d,), rate_mib=0, extra_args=(
               "-drive", f"file=fat:rw:{fat_dir},format=raw,if=none,id=fat0",
               "-device", "virtio-blk-pci,drive=fat0")))]
    for vm in vms:
        vm.wait_qmp()
    vms[1].wait_ready()
    daemon = daemon_for(d_d, p_d, f_d)

    # the destination: waiting, never measured, no forecast, not admitted
    recorder.wait_for(latest(recorder, "dst", "forecast", verdict="not-applicable"), 30,
                      "the destination's forecast")
    # the blocked VM: blocked from its first forecast, never "converges"
    recorder.wait_for(latest(recorder, "fat", "forecast", verdict="blocked"), 30, "blocked")
    # the running guest is measured and forecast; then it is paused
    recorder.wait_for(lambda _m: jsons(recorder, "psd", "dirty_rate"), 30, "a measurement")
    recorder.wait_for(latest(recorder, "psd", "forecast", applicable=True), 30, "a forecast")
    with QmpControl(p_c) as ctl:
        ctl.cmd("stop")
    stopped = time.time()
    recorder.wait_for(latest(recorder, "psd", "forecast", verdict="not-applicable"), 20,
                      "the paused guest's forecast")
    time.sleep(2 * DIRTY["interval_s"])  # no measurement while paused

    info = {vm: jsons(recorder, vm, "info")[-1] for vm in ("dst", "psd", "fat")}
    assert (info["dst"]["role"], info["dst"]["run_state"]) == ("incoming-waiting", "inmigrate")
    assert (info["psd"]["role"], info["psd"]["run_state"]) == ("paused", "paused")
    assert info["fat"]["role"] == "running"
    assert jsons(recorder, "dst", "dirty_rate") == []  # never measured
    assert jsons(recorder, "dst", "forecast")[-1]["reason"] == "waiting for an incoming migration"
    assert all(f["converges"] is None for f in jsons(recorder, "dst", "forecast"))
    late = [m for m in payloads(recorder, "psd", "dirty_rate") if m.at > stopped + 0.5]
    assert late == [] and not payloads(recorder, "psd", "dirty_rate")[-1].payload  # cleared
    assert retained(broker, vm_topic("psd", "dirty_rate")) == []
    blockers = jsons(recorder, "fat", "blockers")[-1]
    assert blockers["migratable"] is False
    assert any("vvfat" in text for text in blockers["observed"])
    fat_forecasts = jsons(recorder, "fat", "forecast")
    assert all(f["verdict"] == "blocked" and f["converges"] is None for f in fat_forecasts)
    assert fat_forecasts[-1]["blockers"] == blockers["observed"]

    results = {vm: admit(daemon, vm) for vm in ("dst", "psd", "fat")}
    assert {vm: r.returncode for vm, r in results.items()} == {"dst": 1, "psd": 1, "fat": 1}
    assert "waiting for an incoming migration" in results["dst"].stdout
    assert results["psd"].stdout == "role: the guest is paused (paused, run state paused)\n"
    assert "The vvfat (rw) format" in results["fat"].stdout
    assert "forecast" not in results["fat"].stdout  # the blockers say it all


@dataclass
class Ends:
    src: QemuVm
    src_ctl: QmpControl
    dst_ctl: QmpControl
    daemon: DaemonProcess


@pytest.fixture
def ends(lab_vm: LabVm, recorder: Recorder, tmp_path: Path,
         daemon_for: Callable[..., DaemonProcess]) -> Iterator[Ends]:
    """``src`` (dirtying 16 MiB/s) and ``dst`` (-incoming defer), one UUID, one daemon."""
    s_d, s_c, d_d, d_c = (sock(tmp_path, n) for n in ("src", "srcc", "dst", "dstc"))
    same = ("-uuid", UUID)
    src = lab_vm(QemuSpec(name="src", qmp_servers=(s_d, s_c), rate_mib=16, extra_args=same))
    dst = lab_vm(QemuSpec(name="dst", qmp_servers=(d_d, d_c), incoming="defer",
                          extra_args=same))
    src.wait_qmp()
    dst.wait_qmp()
    daemon = daemon_for(s_d, d_d, migration={"poll_interval_s": 0.5,
                                             "poll_interval_fast_s": 0.1})
    src.wait_ready()
    with QmpControl(s_c) as src_ctl, QmpControl(d_c) as dst_ctl:
        yield Ends(src, src_ctl, dst_ctl, daemon)


def test_a_migration_moves_both_roles_and_leaves_the_source_migrated_away(
    ends: Ends, recorder: Recorder, broker: Mosquitto,
) -> None:
    recorder.wait_for(lambda _m: jsons(recorder, "src", "dirty_rate"), 30, "a measurement")
    uri = f"tcp:127.0.0.1:{free_port()}"
    migrate_incoming(ends.dst_ctl, uri)
    set_max_bandwidth(ends.src_ctl, 64 * MIB)
    migrate(ends.src_ctl, uri)
    assert wait_for_migration(ends.src_ctl, 60)["status"] == "completed"
    recorder.wait_for(latest(recorder, "src", "info", role="migrated-away"), 20, "away")
    recorder.wait_for(latest(recorder, "dst", "info", role="running"), 20, "dst running")
    recorder.wait_for(latest(recorder, "src", "forecast", verdict="not-applicable"), 20, "fc")

    src_roles = [i["role"] for i in jsons(recorder, "src", "info")]
    dst_roles = [i["role"] for i in jsons(recorder, "dst", "info")]
    assert src_roles[0] == "running" and src_roles[-1] == "migrated-away"
    assert "migrating-out" in src_roles
    assert dst_roles[:2] == ["incoming-waiting", "incoming-receiving"]
    # no stale rate: the source's is cleared at switchover and stays so
    assert not payloads(recorder, "src", "dirty_rate")[-1].payload
    assert retained(broker, vm_topic("src", "dirty_rate")) == []
    # the destination measured nothing and sent progress only when it changed
    assert all(d["source"] == "calc-dirty-rate" for d in jsons(recorder, "dst", "dirty_rate"))
    dst_progress = jsons(recorder, "dst", "migration")
    assert len(dst_progress) <= len({m["status"] for m in dst_progress}) + 1
    assert all(m["forecast"] is None for m in dst_progress)
    # both ends joined by the uuid
    summaries = {vm: jsons(recorder, vm, "migration/summary")[-1] for vm in ("src", "dst")}
    assert summaries["src"]["uuid"] == summaries["dst"]["uuid"] == UUID
    assert {summaries["src"]["role"], summaries["dst"]["role"]} == {"source", "destination"}
    assert all(p["uuid"] == UUID for p in jsons(recorder, "src", "migration/pass"))
    # the migration's forecast: passes in total, passes_remaining counting down within it;
    # QEMU's own counter (the summary's) also counts the sync that found the rest small
    # enough and the one at stop-copy
    inline = [m["forecast"] for m in jsons(recorder, "src", "migration") if m["forecast"]]
    assert all(f["passes"] is None or f["passes"] >= f["passes_remaining"] for f in inline)
    assert inline[-1]["passes_remaining"] == 0
    assert summaries["src"]["passes"] == inline[-1]["passes"] + 2

    denied = admit(ends.daemon, "src")
    assert denied.returncode == 1, denied.stdout
    assert "migrated away" in denied.stdout
    # the source quits: offline, and still not admitted
    with contextlib.suppress(DemoError):  # QEMU may hang up before its reply
        ends.src_ctl.cmd("quit")
    ends.src.process.wait(10)
    recorder.wait_text(vm_topic("src", "status"), "offline", 20)
    gone = admit(ends.daemon, "src")
    assert gone.returncode == 1 and "offline" in gone.stdout
