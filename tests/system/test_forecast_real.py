"""Dirty rate, in-migration estimate and convergence forecast against real QEMU.

The lab guest dirties memory at a known rate R over a working set it filled at
boot, so the truth is known: page-sampling must find R (±25 %), an estimate must
be published within 2 s of a capped migration's start (±30 %), a migration with R
above the bandwidth must be forecast not to converge, and one well below it to
converge, with an ETA within ±30 % of the time it actually took. Before a migration:
a dirty rate whose bound straddles the bandwidth says ``uncertain``, and the ETA range
contains the time a real migration took, whatever is known of the guest's memory.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.daemon.residency import read_residency
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import (
    QmpControl,
    migrate,
    migrate_incoming,
    set_max_bandwidth,
    wait_for_migration,
)
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.guest import GuestImage
from qmpdirty.demo.lab.migration_run import MigrationCase, run_case
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm, free_port
from qmpdirty.demo.lab.recorder import Recorder

MIB = 2**20


def _daemon(tmp_path: Path, broker: Mosquitto, qmp: list[Path], interval: float = 2.0
            ) -> DaemonProcess:
    table = base_config(broker, vm=[{"qmp": f"unix:{p}"} for p in qmp],
                        dirty_rate={"enabled": True, "interval_s": interval, "window_s": 1.0,
                                    "sample_pages": 16384},
                        migration={"poll_interval_s": 0.5, "poll_interval_fast_s": 0.2})
    return DaemonProcess(tmp_path, table).start()


def _json(rec: Recorder, vm: str, kind: str) -> list[dict[str, Any]]:
    return [m.json for m in rec.snapshot() if m.topic == vm_topic(vm, kind)]


@pytest.mark.parametrize("rate", [8, 32])
def test_dirty_rate_within_25_percent(rate: int, broker: Mosquitto, recorder: Recorder,
                                      lab_vm: Callable[[QemuSpec], QemuVm],
                                      tmp_path: Path) -> None:
    qmp = sock(tmp_path, f"r{rate}")
    vm = lab_vm(QemuSpec(name=f"r{rate}", qmp_servers=(qmp,), rate_mib=rate))
    vm.wait_ready()
    daemon = _daemon(tmp_path, broker, [qmp], interval=1.2)
    try:
        rates = recorder.wait_for(lambda _m: (r := _json(recorder, f"r{rate}", "dirty_rate"))
                                  and len(r) >= 3 and r, 40, "three measurements")
    finally:
        daemon.stop()
        daemon.close()
    measured = statistics.median(r["bytes_per_s"] for r in rates) / MIB
    assert abs(measured - rate) <= 0.25 * rate, f"{measured:.1f} MiB/s for {rate}"
    assert all(r["error_bound_rel"] is not None and r["basis"] for r in rates)


def _start_pair(lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path, name: str, rate: int,
                wss: int) -> tuple[QemuVm, Path, Path, Path]:
    qmp, ctl, dctl = (sock(tmp_path, f"{name}{s}") for s in ("", "ctl", "dctl"))
    src = lab_vm(QemuSpec(name=name, qmp_servers=(qmp, ctl), rate_mib=rate, wss_mib=wss))
    lab_vm(QemuSpec(name=f"{name}-dst", qmp_servers=(dctl,), incoming="defer")).wait_qmp()
    src.wait_ready()
    return src, qmp, ctl, dctl


def test_estimate_within_2s_and_no_convergence_above_bandwidth(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    rate = 16
    _, qmp, ctl, dctl = _start_pair(lab_vm, tmp_path, "fast", rate, 64)
    daemon = _daemon(tmp_path, broker, [qmp])
    try:
        recorder.wait_for(lambda _m: _json(recorder, "fast", "dirty_rate"), 20, "a measurement")
        with QmpControl(ctl) as src, QmpControl(dctl) as dst:
            uri = f"tcp:127.0.0.1:{free_port()}"
            migrate_incoming(dst, uri)
            set_max_bandwidth(src, 8 * MIB)  # half the dirty rate
            started = time.time()
            migrate(src, uri)
            estimate = recorder.wait_for(lambda msgs: [
                m for m in msgs if m.topic == vm_topic("fast", "dirty_rate")
                and m.json["source"] == "estimate"], 5, "an estimate")[0]
            assert estimate.at - started <= 2.0, f"first estimate after {estimate.at - started}"
            assert abs(estimate.json["bytes_per_s"] / MIB - rate) <= 0.3 * rate
            verdict = recorder.wait_for(lambda _m: [
                p for p in _json(recorder, "fast", "migration")
                if p["forecast"] and p["forecast"]["converges"] is not None], 10, "a forecast")
            assert verdict[0]["forecast"]["converges"] is False
            actions = {r["action"] for r in verdict[-1]["recommendations"]}
            assert {"downtime-limit", "auto-converge", "postcopy"} <= actions
            src.cmd("migrate_cancel")
            wait_for_migration(src, 30)
    finally:
        daemon.stop()
        daemon.close()


def test_converging_migration_eta_within_30_percent(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    _, qmp, ctl, dctl = _start_pair(lab_vm, tmp_path, "slow", 4, 160)
    daemon = _daemon(tmp_path, broker, [qmp])
    try:
        recorder.wait_for(lambda _m: _json(recorder, "slow", "dirty_rate"), 20, "a measurement")
        with QmpControl(ctl) as src, QmpControl(dctl) as dst:
            uri = f"tcp:127.0.0.1:{free_port()}"
            migrate_incoming(dst, uri)
            set_max_bandwidth(src, 32 * MIB)  # eight times the dirty rate
            started = time.time()
            migrate(src, uri)
            final = wait_for_migration(src, 90)
        ended = time.time()
    finally:
        daemon.stop()
        daemon.close()
    assert final["status"] == "completed"
    records = [m for m in recorder.snapshot() if m.topic == vm_topic("slow", "migration")
               and m.json["forecast"] and m.json["forecast"]["converges"] is not None]
    early = [m for m in records if m.at - started >= 1.5]  # after ~1.5 s of real progress
    assert early, "no forecast during the migration"
    first = early[0]
    assert first.json["forecast"]["converges"] is True
    actual = ended - first.at
    eta = first.json["forecast"]["eta_s"]
    assert abs(eta - actual) <= 0.3 * actual, f"ETA {eta:.1f} s vs actual {actual:.1f} s"


def test_opt_in_policy_raises_downtime_limit_when_it_will_not_converge(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """Off by default and never under libvirt; here both allow it: the daemon raises
    downtime-limit once, logs it and publishes the recommendation as applied."""
    _, qmp, ctl, dctl = _start_pair(lab_vm, tmp_path, "pol", 16, 64)
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        dirty_rate={"enabled": True, "interval_s": 2.0, "window_s": 1.0,
                                    "sample_pages": 16384},
                        migration={"poll_interval_s": 0.5, "poll_interval_fast_s": 0.2},
                        policy={"apply_recommendations": True, "under_libvirt": False})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        recorder.wait_for(lambda _m: _json(recorder, "pol", "dirty_rate"), 20, "a measurement")
        with QmpControl(ctl) as src, QmpControl(dctl) as dst:
            uri = f"tcp:127.0.0.1:{free_port()}"
            migrate_incoming(dst, uri)
            set_max_bandwidth(src, 8 * MIB)
            before = src.cmd("query-migrate-parameters")
            migrate(src, uri)
            applied = recorder.wait_for(lambda _m: [
                p for p in _json(recorder, "pol", "migration")
                if any(r["applied"] for r in p["recommendations"])], 15, "an applied action")
            after = src.cmd("query-migrate-parameters")
            src.cmd("migrate_cancel")
            wait_for_migration(src, 30)
    finally:
        daemon.stop()
        daemon.close()
    assert isinstance(before, dict) and isinstance(after, dict)
    rec = next(r for r in applied[0]["recommendations"] if r["action"] == "downtime-limit")
    assert rec["applied"] and after["downtime-limit"] == int(rec["value"]) > before[
        "downtime-limit"]
    assert "policy applied downtime-limit" in daemon.log()


def test_a_bound_that_straddles_the_bandwidth_says_uncertain(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """16 MiB/s under a 16 MiB/s cap, sampled with QEMU's default 512 pages per GiB (128
    pages of a 256 MiB guest: a bound of tens of percent): the low end converges, the
    high end does not (it dirties the bandwidth, or nearly: more passes than allowed).
    Never ``converges: true``; the range says how far it goes."""
    qmp, ctl = sock(tmp_path, "unc"), sock(tmp_path, "uncctl")
    lab_vm(QemuSpec(name="unc", qmp_servers=(qmp, ctl), rate_mib=16, wss_mib=64)).wait_ready()
    with QmpControl(ctl) as control:
        set_max_bandwidth(control, 16 * MIB)  # before the daemon reads the parameters
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        dirty_rate={"enabled": True, "interval_s": 2.0, "window_s": 1.0,
                                    "sample_pages": 512})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        found = recorder.wait_for(lambda _m: [
            f for f in _json(recorder, "unc", "forecast") if f["verdict"] == "uncertain"],
            60, "an uncertain forecast")[0]
    finally:
        daemon.stop()
        daemon.close()
    assert found["converges"] is None and found["bandwidth_source"] == "max-bandwidth"
    low, high = found["dirty_bytes_per_s_low"], found["dirty_bytes_per_s_high"]
    assert low < found["dirty_bytes_per_s"] < high and low < 16 * MIB
    assert found["eta_s_low"] is not None and found["eta_s_high"] is None
    assert found["dirty_error_bound_rel"] > 0.2
    assert all(f["converges"] is not True for f in _json(recorder, "unc", "forecast")
               if f["verdict"] == "uncertain")


@pytest.mark.parametrize("case", [
    MigrationCase(512, 8, 64, 32, host_memory=False),  # nothing known of the memory
    MigrationCase(512, 8, 64, 32),  # what the host backs of the guest's RAM
    MigrationCase(512, 8, 64, 32, balloon=True),  # the guest's balloon driver reports
], ids=["nothing-known", "host-memory", "guest-stats"])
def test_the_pre_migration_range_contains_the_time_a_real_migration_took(
    case: MigrationCase, guest: GuestImage, tmp_path: Path
) -> None:
    run = run_case(case, guest, tmp_path)
    f, actual = run.forecast, run.total_s
    assert f["verdict"] == "converges" and f["bandwidth_source"] == "max-bandwidth"
    assert f["eta_s_low"] <= actual <= f["eta_s_high"], (
        f"{actual:.2f} s outside [{f['eta_s_low']:.2f}, {f['eta_s_high']:.2f}]")
    assert f["first_pass_source"] == case.source
    if case.source == "guest-stats":  # RAM - free is close to what the first pass sends
        assert abs(f["eta_s"] - actual) <= 0.3 * actual, f"ETA {f['eta_s']:.2f} s vs {actual:.2f}"
    if case.source == "host-memory":  # an upper bound: the high end, far below all of RAM
        assert f["first_pass_content_bytes_high"] == f["first_pass_content_bytes"]
        assert f["first_pass_content_bytes_high"] < 0.6 * 512 * MIB
        # huge pages round the backing up: the central figure errs long, but not by much
        assert 0.9 * actual <= f["eta_s"] <= 1.5 * actual, f"ETA {f['eta_s']:.2f} s vs {actual:.2f}"
        # in the bulk pass, where the host backs memory ahead of the pass is known
        bulk = [abs(p["forecast"]["eta_s"] - (run.ended - p["ts"])) / (run.ended - p["ts"])
                for p in run.progress if p["pass"] <= 1 and p["status"] == "active"
                and p["ts"] - run.started >= 1.0 and run.ended - p["ts"] >= 2.0]
        assert bulk and statistics.median(bulk) <= 0.25, bulk
    elif case.source == "unknown":  # all of RAM: the high end, 19.7 s before the range
        assert f["eta_s"] > 2 * actual


def test_what_the_host_backs_of_a_real_guest_is_read_from_its_mappings(
    lab_vm: Callable[[QemuSpec], QemuVm]
) -> None:
    """A 2 GiB guest dirtying 64 MiB: QEMU's guest-RAM mapping is found among its others
    (TCG's 1 GiB code buffer among them), and the host backs a fraction of the RAM, at
    least the working set."""
    vm = lab_vm(QemuSpec(name="rss", mem_mib=2048, rate_mib=16, wss_mib=64))
    vm.wait_ready(90)
    time.sleep(2.0)  # the working set written through at least once
    found = read_residency(Path("/proc"), vm.pid, 2048 * MIB, time.time())
    assert found is not None
    assert found.mapped_bytes == 2048 * MIB
    assert 64 * MIB <= found.resident_bytes <= 1024 * MIB, found
