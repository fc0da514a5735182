"""The forecast against real migrations (issue 11, items 5 and 10).

Real QEMU (TCG), the lab guest dirtying a known rate over a working set, a
``max-bandwidth`` cap set before the daemon starts, the real daemon and broker
(``qmpdirty.demo.lab.migration_run``). For each (guest size, rate, cap) and what is
known of the guest's memory beforehand (nothing, its balloon's statistics, a previous
migration cancelled after its bulk pass):

* the retained ``forecast`` published just before ``migrate``: its ETA range against
  QEMU's ``total-time`` (inside?) and its central figure's error;
* every ``migration`` payload's ETA against the time that was actually left, once at
  least a second has passed and while at least ``MIN_LEFT_S`` remain: median and
  largest error, in the bulk pass and after it.

Each run records the machine's load (``/proc/loadavg``): TCG shares two cores with
whatever else runs.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.guest import ensure_guest
from qmpdirty.demo.lab.migration_run import MigrationCase, MigrationRun, run_case

ROOT = Path(__file__).resolve().parent.parent
#: Below this much time left, a relative error says more about the 0.2-0.5 s polls and
#: the stop-copy phase than about the forecast.
MIN_LEFT_S = 2.0

QUICK = (MigrationCase(128, 2, 16, 32),)
CASES = (
    MigrationCase(512, 8, 64, 32, host_memory=False),  # forecast 19.7 s once, took 5.3 s
    MigrationCase(512, 8, 64, 32),
    MigrationCase(512, 8, 64, 32, balloon=True),
    MigrationCase(512, 8, 64, 32, previous=True),
    MigrationCase(512, 4, 256, 16, host_memory=False),
    MigrationCase(512, 4, 256, 16),
    MigrationCase(512, 4, 256, 16, balloon=True),
    MigrationCase(1024, 16, 128, 64, balloon=True),
)


def _load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _errors(run: MigrationRun, *, bulk: bool) -> list[float]:
    """Relative errors of the in-migration ETA against the time that was left."""
    found = []
    for p in run.progress:
        eta, left = p["forecast"]["eta_s"], run.ended - p["ts"]
        if eta is None or p["status"] != "active" or left < MIN_LEFT_S:
            continue
        if p["ts"] - run.started < 1.0 or (p["pass"] <= 1) != bulk:
            continue
        found.append((eta - left) / left)
    return found


def _figures(run: MigrationRun, load: str) -> list[dict[str, Any]]:
    f, actual = run.forecast, run.total_s
    low, high = f["eta_s_low"], f["eta_s_high"]
    inside = low <= actual <= (high if high is not None else float("inf"))
    label = run.case.label
    out = [{
        "name": f"pre-migration ETA: {label}", "value": round(f["eta_s"], 2), "unit": "s",
        "note": (f"range {low:.2f}-{'never' if high is None else f'{high:.2f}'} s, actual "
                 f"{actual:.2f} s: {'inside' if inside else 'OUTSIDE'}; verdict {f['verdict']}; "
                 f"content {f['first_pass_content_bytes'] / 2**20:.0f} MiB "
                 f"({f['first_pass_source']}); dirty {f['dirty_bytes_per_s'] / 2**20:.1f} "
                 f"+- {100 * (f['dirty_error_bound_rel'] or 0):.0f} %; load {load}"),
    }, {
        "name": f"pre-migration ETA error: {label}",
        "value": round(abs(f["eta_s"] - actual) / actual * 100, 1), "unit": "%",
        "note": "signed " + f"{(f['eta_s'] - actual) / actual * 100:+.1f} %",
    }]
    for phase, bulk in (("bulk pass", True), ("after the bulk pass", False)):
        errors = _errors(run, bulk=bulk)
        if errors:
            out.append({
                "name": f"in-migration ETA error, {phase}: {label}",
                "value": round(statistics.median(abs(e) for e in errors) * 100, 1), "unit": "%",
                "note": f"median of {len(errors)}; largest {max(abs(e) for e in errors):.0%}; "
                        f">= {MIN_LEFT_S:g} s left",
            })
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    guest = ensure_guest(ROOT / ".cache" / "guest")
    figures: list[dict[str, Any]] = []
    inside = 0
    cases = QUICK if quick else CASES
    for case in cases:
        load = _load()
        result = run_case(case, guest, Path(tempfile.mkdtemp(prefix="qmpdirty-bench-fc-")))
        figures += _figures(result, load)
        high = result.forecast["eta_s_high"]
        inside += result.forecast["eta_s_low"] <= result.total_s <= (
            high if high is not None else float("inf"))
    figures.append({"name": "actual time inside the pre-migration ETA range",
                    "value": inside, "unit": "runs", "target": f">= {len(cases)}",
                    "note": f"of {len(cases)}"})
    return figures
