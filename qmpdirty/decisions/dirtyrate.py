"""When to measure the dirty rate, and with which arguments (pure core).

Stage: decisions. QEMU runs one ``calc-dirty-rate`` at a time per VM ("the dirty
rate is already being measured" otherwise) and a measurement during a migration
competes with it, so a measurement starts only when none is running, no migration
is active and the interval since the last start has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.qmp.versions import has_calc_time_unit

DirtyRateMode = Literal["page-sampling", "dirty-bitmap", "dirty-ring"]


@dataclass(frozen=True, slots=True)
class DirtyRatePlan:
    """How this VM's dirty rate is measured (from config)."""

    mode: DirtyRateMode
    window_s: float
    sample_pages: int
    interval_s: float


def seconds_until_due(
    plan: DirtyRatePlan, now: float, last_start: float | None, migrating: bool, measuring: bool
) -> float | None:
    """0 when a measurement should start now, a delay otherwise; None while blocked."""
    if migrating or measuring:
        return None
    if last_start is None:
        return 0.0
    return max(0.0, last_start + plan.interval_s - now)


def calc_dirty_rate_args(plan: DirtyRatePlan, version: tuple[int, int, int]) -> dict[str, object]:
    """Arguments of ``calc-dirty-rate``; sub-second windows need ``calc-time-unit`` (8.2)."""
    args: dict[str, object] = {"mode": plan.mode}
    if has_calc_time_unit(version):
        args["calc-time"] = max(1, round(plan.window_s * 1000))
        args["calc-time-unit"] = "millisecond"
    else:
        args["calc-time"] = max(1, round(plan.window_s))
    if plan.mode == "page-sampling":
        args["sample-pages"] = plan.sample_pages
    return args


def query_dirty_rate_args(version: tuple[int, int, int]) -> dict[str, object]:
    """Arguments of ``query-dirty-rate`` matching ``calc_dirty_rate_args``."""
    return {"calc-time-unit": "millisecond"} if has_calc_time_unit(version) else {}
