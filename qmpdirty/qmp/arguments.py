"""The arguments of the commands qmpdirty sends, per QEMU version (pure).

Stage: translate (facts -> command arguments). The other direction of ``translate``:
what a decision asks for, spelled as this QEMU's QAPI wants it. Must not do I/O.
"""

from __future__ import annotations

from typing import Protocol

from qmpdirty.facts.qemu import (
    CALC_TIME_UNIT,
    SAMPLE_PAGES_MAX,
    SAMPLE_PAGES_MIN,
    QemuVersion,
    since,
)
from qmpdirty.facts.vm import DirtyRateMode


class DirtyRateRequest(Protocol):
    """What one window measures (``decisions.migration.dirtyrate.DirtyRatePlan`` is one)."""

    @property
    def mode(self) -> DirtyRateMode: ...
    @property
    def window_s(self) -> float: ...
    @property
    def sample_pages(self) -> int: ...


def calc_dirty_rate_args(plan: DirtyRateRequest, version: QemuVersion) -> dict[str, object]:
    """Arguments of one ``calc-dirty-rate`` window; sub-second windows need
    ``calc-time-unit`` (8.2). ``sample-pages`` (per GiB) is kept inside the range
    ``is_sample_pages_valid`` accepts: QEMU refuses the whole command otherwise."""
    args: dict[str, object] = {"mode": plan.mode}
    if since(version, CALC_TIME_UNIT):
        args["calc-time"] = max(1, round(plan.window_s * 1000))
        args["calc-time-unit"] = "millisecond"
    else:
        args["calc-time"] = max(1, round(plan.window_s))
    if plan.mode == "page-sampling":
        args["sample-pages"] = min(SAMPLE_PAGES_MAX, max(SAMPLE_PAGES_MIN, plan.sample_pages))
    return args


def query_dirty_rate_args(version: QemuVersion) -> dict[str, object]:
    """Arguments of ``query-dirty-rate`` matching ``calc_dirty_rate_args``."""
    return {"calc-time-unit": "millisecond"} if since(version, CALC_TIME_UNIT) else {}
