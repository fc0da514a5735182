"""Dirty-rate accuracy: qmpdirty's default method beside QEMU's default (issue 11, item 4).

Real QEMU (TCG), the lab guest dirtying a known rate R over a working set W, one guest
at a time. For every guest size, R and W: measurements by qmpdirty's default method
(``plan_measurement`` with the default ``[dirty_rate]``, its windows run back to back,
``combine``: the daemon's own pure code, driven here over a plain QMP socket) and by
QEMU's default (512 pages per GiB, one window, its reading as reported), interleaved so
that both see the same machine load. Figures: median and 95th-percentile relative
error against R, how often the published bound held, and the time QEMU spends:
wall-clock per measurement, and per window the time past the window (QEMU hashes every
sample before the window, inside it, and again after it: its CPU per window is about
twice that excess). The 64 GiB guest runs on lazily backed RAM (``lazy_ram``: only what
it touches is backed, about 2 GiB); every case also carries the exact model's figures
(``qmpdirty.demo.lab.dirtyrate_model``) beside the measured ones.
``QMPDIRTY_BENCH_GUESTS_MIB`` (e.g. ``8192,65536``) runs only those guest sizes.

Not run: W = 512 MiB on the 512 MiB guest (it does not fit beside the kernel). Every
R up to 64 MiB/s is within what the dirtier sustains under TCG (16,384 page writes/s).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmpdirty.config.sections import DirtyRateConfig
from qmpdirty.decisions.migration.dirtyrate import DirtyRatePlan, combine, plan_measurement
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.dirtyrate_model import Guest, figure_errors, raw_errors
from qmpdirty.demo.lab.guest import ensure_guest
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.vm import DirtyRateMeasurement
from qmpdirty.qmp import translate
from qmpdirty.qmp.arguments import calc_dirty_rate_args, query_dirty_rate_args

MIB = 2**20
ROOT = Path(__file__).resolve().parent.parent
QEMU_DEFAULT = DirtyRatePlan("page-sampling", 1.0, 512, 30.0)
GUESTS_MIB = (512, 2048, 8192, 65536)
LAZY_FROM_MIB = 16384  # larger guests start on lazily backed RAM
RATES = (4, 16, 64)
WSS_MIB = (64, 512)


@dataclass(frozen=True)
class Case:
    ram_mib: int
    rate: int
    wss_mib: int

    @property
    def label(self) -> str:
        ram = f"{self.ram_mib // 1024} GiB" if self.ram_mib >= 1024 else f"{self.ram_mib} MiB"
        return f"{ram}, R={self.rate} MiB/s, W={self.wss_mib} MiB"


@dataclass
class Series:
    """One method's measurements of one case."""

    errors: list[float]
    covered: list[bool]
    wall_s: list[float]
    excess_ms: list[float]
    sample_pages: int = 0
    windows: int = 1


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _window(c: QmpControl, plan: DirtyRatePlan, version: QemuVersion
            ) -> tuple[DirtyRateMeasurement, float]:
    """One window; its reading and the wall-clock time past the measured window (ms)."""
    started = time.monotonic()
    c.cmd("calc-dirty-rate", **calc_dirty_rate_args(plan, version))
    time.sleep(plan.window_s * 0.95)
    while True:
        found = translate.dirty_rate_from(c.cmd("query-dirty-rate",
                                                **query_dirty_rate_args(version)))
        if found is not None:
            return found, (time.monotonic() - started - found.window_s) * 1000
        if time.monotonic() - started > 60:
            raise TimeoutError("calc-dirty-rate did not finish in 60 s")
        time.sleep(0.005)


def _measure(c: QmpControl, plan: DirtyRatePlan, version: QemuVersion, case: Case,
             series: Series, *, raw: bool) -> None:
    """One measurement by ``plan``: qmpdirty's figure, or QEMU's own reading (``raw``)."""
    ram = case.ram_mib * MIB
    started = time.monotonic()
    windows = [_window(c, plan, version) for _ in range(plan.windows)]
    series.wall_s.append(time.monotonic() - started)
    series.excess_ms += [e for _, e in windows]
    figure, bound, _ = combine([m for m, _ in windows], ram)
    mib_s = windows[0][0].bytes_per_s / MIB if raw else figure.bytes_per_s / MIB
    series.errors.append(abs(mib_s - case.rate) / case.rate)
    series.covered.append(bound is not None and abs(mib_s - case.rate) <= bound * mib_s)
    series.sample_pages, series.windows = plan.sample_pages, plan.windows


def _run_case(work: Path, case: Case, rounds: int) -> tuple[Series, Series, float]:
    guest = ensure_guest(ROOT / ".cache" / "guest")
    qmp = Path(tempfile.mkdtemp(prefix="qba-", dir="/tmp")) / "acc.sock"
    spec = QemuSpec(name="acc", mem_mib=case.ram_mib, rate_mib=case.rate,
                    wss_mib=case.wss_mib, qmp_servers=(qmp,),
                    lazy_ram=case.ram_mib >= LAZY_FROM_MIB)
    ours, qemus = Series([], [], [], []), Series([], [], [], [])
    with QemuVm(spec, guest, work / f"acc-{case.ram_mib}-{case.rate}-{case.wss_mib}") as vm:
        vm.wait_ready(180)
        time.sleep(1.0)  # past the dirtier's start
        with QmpControl(qmp, timeout_s=60) as c:
            version = translate.version_from(c.cmd("query-version"))
            plan = plan_measurement(DirtyRateConfig(), "page-sampling", case.ram_mib * MIB)
            began = load()
            for _ in range(rounds):
                _measure(c, plan, version, case, ours, raw=False)
                _measure(c, QEMU_DEFAULT, version, case, qemus, raw=True)
    return ours, qemus, max(began, load())


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _figures(case: Case, ours: Series, qemus: Series, load_1m: float) -> list[dict[str, Any]]:
    guest = Guest(case.ram_mib * MIB, case.rate, case.wss_mib)
    model = figure_errors(guest, ours.sample_pages, ours.windows)
    qmodel = raw_errors(guest, 512)
    n = len(ours.errors)
    return [
        {"name": f"{case.label}: qmpdirty median error", "unit": "%", "target": "<= 10",
         "value": round(100 * statistics.median(ours.errors), 1),
         "note": f"p95 {100 * _p95(ours.errors):.1f} %, bound held {sum(ours.covered)}/{n}; "
                 f"{ours.windows} windows x {ours.sample_pages}/GiB; model: median "
                 f"{100 * model.median_rel:.1f} %, p95 {100 * model.p95_rel:.1f} %; "
                 f"load {load_1m:.2f}"},
        {"name": f"{case.label}: QEMU 512/GiB median error", "unit": "%",
         "value": round(100 * statistics.median(qemus.errors), 1),
         "note": f"p95 {100 * _p95(qemus.errors):.1f} %; model: median "
                 f"{100 * qmodel.median_rel:.1f} %, p95 {100 * qmodel.p95_rel:.1f} %"},
        {"name": f"{case.label}: QEMU time per measurement, qmpdirty", "unit": "s",
         "value": round(statistics.median(ours.wall_s), 2),
         "note": f"past each window: median {statistics.median(ours.excess_ms):.0f} ms, "
                 f"max {max(ours.excess_ms):.0f} ms; QEMU 512/GiB: "
                 f"{statistics.median(qemus.wall_s):.2f} s, past the window "
                 f"{statistics.median(qemus.excess_ms):.0f} ms"},
    ]


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case(512, 16, 64)]
    chosen = os.environ.get("QMPDIRTY_BENCH_GUESTS_MIB")
    sizes = tuple(int(v) for v in chosen.split(",")) if chosen else GUESTS_MIB
    return [Case(ram, rate, wss) for ram in sizes for rate in RATES for wss in WSS_MIB
            if wss < ram]  # W = 512 MiB does not fit in a 512 MiB guest


def run(quick: bool = False) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="qmpdirty-bench-"))
    rounds = 1 if quick else 10
    figures: list[dict[str, Any]] = [{"name": "machine load (1 min) at the start", "unit": "",
                                      "value": load(), "note": "/proc/loadavg"}]
    for case in cases(quick):
        ours, qemus, load_1m = _run_case(work, case, rounds)
        figures += _figures(case, ours, qemus, load_1m)
    figures.append({"name": "machine load (1 min) at the end", "unit": "", "value": load(),
                    "note": "/proc/loadavg"})
    return figures
