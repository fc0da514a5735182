"""One real migration watched by the real daemon: what it forecast, and what happened.

For the forecast's system tests and its benchmark. A lab guest dirtying a known rate
migrates over loopback TCP under a ``max-bandwidth`` cap set before the daemon starts
(so the forecast's bandwidth is QEMU's, ``bandwidth_source: max-bandwidth``). Before
it, optionally: a balloon with statistics (``guest-stats``), or a first migration
cancelled once its bulk pass is done (``previous-migration``); else the daemon reads what
the host backs of the guest's RAM (``host-memory``), unless the case hides ``/proc``
from it (``[host] proc_root`` an empty directory: ``unknown``). ``run_case`` returns the
retained ``forecast`` published just before ``migrate``, every ``migration`` payload of
the migration and QEMU's own ``total-time``. Must not judge the figures: callers do.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import (
    QmpControl,
    migrate,
    migrate_incoming,
    query_migrate,
    set_max_bandwidth,
    wait_for_migration,
)
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, vm_topic
from qmpdirty.demo.lab.guest import GuestImage
from qmpdirty.demo.lab.qemu import BALLOON_ID, QemuSpec, QemuVm, free_port
from qmpdirty.demo.lab.recorder import Recorder

MIB = 2**20
VM = "fc"


@dataclass(frozen=True)
class MigrationCase:
    """Guest size, its dirtying and the cap; what is known of its memory beforehand."""

    mem_mib: int
    rate_mib: int
    wss_mib: int
    cap_mib: int
    balloon: bool = False  # guest-stats polled every second
    previous: bool = False  # a migration cancelled after its bulk pass, first
    sample_pages: int = 16384  # per GiB, for the dirty rate (and so its bound)
    host_memory: bool = True  # the daemon may read the QEMU process's mappings

    @property
    def source(self) -> str:
        """The ``first_pass_source`` the forecast should rest on."""
        return "guest-stats" if self.balloon else "previous-migration" if self.previous \
            else "host-memory" if self.host_memory else "unknown"

    @property
    def label(self) -> str:
        known = {"guest-stats": "guest-stats", "previous-migration": "previous migration",
                 "host-memory": "host's backing only",
                 "unknown": "nothing known"}[self.source]
        return (f"{self.mem_mib} MiB guest, {self.rate_mib} MiB/s dirty over "
                f"{self.wss_mib} MiB, {self.cap_mib} MiB/s cap, {known}")


@dataclass(frozen=True)
class MigrationRun:
    case: MigrationCase
    forecast: dict[str, Any]  # the retained forecast just before ``migrate``
    started: float  # wall clock just before ``migrate``
    total_s: float  # QEMU's total-time
    progress: list[dict[str, Any]]  # ``migration`` payloads with a forecast, in order

    @property
    def ended(self) -> float:
        return self.started + self.total_s


def _sock(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="qdf-", dir="/tmp")) / f"{name}.sock"


def _forecasts(rec: Recorder) -> list[dict[str, Any]]:
    return [m.json for m in rec.snapshot() if m.topic == vm_topic(VM, "forecast") and m.payload]


def _settled(rec: Recorder, case: MigrationCase, since: float) -> dict[str, Any] | None:
    """The latest forecast since ``since`` that has figures and rests on what the case
    makes known (its ``first_pass_source``)."""
    found = [f for f in _forecasts(rec) if f["ts"] >= since and f["eta_s_low"] is not None
             and f["first_pass_source"] == case.source]
    return found[-1] if found else None


def _cancel_after_bulk_pass(control: QmpControl, dst: QmpControl) -> None:
    uri = f"tcp:127.0.0.1:{free_port()}"
    migrate_incoming(dst, uri)
    migrate(control, uri)
    deadline = time.monotonic() + 120
    while query_migrate(control).get("ram", {}).get("dirty-sync-count", 0) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the first migration's bulk pass did not end")
        time.sleep(0.05)
    control.cmd("migrate_cancel")
    wait_for_migration(control, 30)


def run_case(case: MigrationCase, guest: GuestImage, work: Path) -> MigrationRun:
    """Boot, measure, forecast, migrate; returns what was published and what happened."""
    qmp, ctl = _sock("fc"), _sock("fcctl")
    dsts = [_sock(f"dst{i}") for i in range(2 if case.previous else 1)]
    src_spec = QemuSpec(name=VM, mem_mib=case.mem_mib, rate_mib=case.rate_mib,
                        wss_mib=case.wss_mib, qmp_servers=(qmp, ctl), balloon=case.balloon)
    vms = [QemuVm(src_spec, guest, work / "src")]
    vms += [QemuVm(QemuSpec(name=f"{VM}-dst{i}", mem_mib=case.mem_mib, qmp_servers=(d,),
                            incoming="defer", balloon=case.balloon), guest, work / f"dst{i}")
            for i, d in enumerate(dsts)]
    with Mosquitto() as broker:
        try:
            for vm in vms:
                vm.start()
            vms[0].wait_ready(90)
            for vm in vms[1:]:
                vm.wait_qmp()
            return _observe(case, broker, qmp=qmp, ctl=ctl, dsts=dsts, work=work)
        finally:
            for vm in vms:
                vm.stop()


def _observe(case: MigrationCase, broker: Mosquitto, *, qmp: Path, ctl: Path,
             dsts: list[Path], work: Path) -> MigrationRun:
    rec = Recorder(broker.port)
    with QmpControl(ctl) as control:
        set_max_bandwidth(control, case.cap_mib * MIB)
        if case.balloon:
            control.cmd("qom-set", path=f"/machine/peripheral/{BALLOON_ID}",
                        property="guest-stats-polling-interval", value=1)
        table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}], dirty_rate={
            "enabled": True, "interval_s": 2.0, "window_s": 1.0,
            "sample_pages": case.sample_pages},
            migration={"poll_interval_s": 0.5, "poll_interval_fast_s": 0.2},
            forecast={"publish_interval_s": 2.0})
        if not case.host_memory:
            hidden = work / "no-proc"
            hidden.mkdir(parents=True, exist_ok=True)
            table["host"] = {**table.get("host", {}), "proc_root": str(hidden)}
        daemon = DaemonProcess(work, table).start()
        try:
            if case.previous:
                rec.wait_for(lambda _m: _forecasts(rec), 60, "a first forecast")
                with QmpControl(dsts[0]) as dst:
                    _cancel_after_bulk_pass(control, dst)
            since = time.time()
            forecast = rec.wait_for(lambda _m: _settled(rec, case, since), 60,
                                    "a forecast with figures")
            with QmpControl(dsts[-1]) as dst:
                uri = f"tcp:127.0.0.1:{free_port()}"
                migrate_incoming(dst, uri)
                started = time.time()
                migrate(control, uri)
                final = wait_for_migration(control, 300)
            time.sleep(1.0)  # the last payloads
        finally:
            daemon.stop()
            daemon.close()
            rec.close()
    if final.get("status") != "completed":
        raise RuntimeError(f"{case.label}: migration {final.get('status')}: {final}")
    progress = [m.json for m in rec.snapshot() if m.topic == vm_topic(VM, "migration")
                and m.json["ts"] >= started and m.json.get("forecast")]
    return MigrationRun(case, forecast, started, final["total-time"] / 1000, progress)
