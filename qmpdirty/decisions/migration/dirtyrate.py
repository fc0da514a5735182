"""When to measure the dirty rate, and with which arguments (pure core).

Stage: decisions. QEMU runs one ``calc-dirty-rate`` at a time per VM ("the dirty
rate is already being measured" otherwise) and a measurement during a migration
competes with it, so a measurement starts only when none is running, no migration
is active and the interval since the last start has passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qmpdirty.facts.qemu import TRACKING_STARTED, QemuVersion, since
from qmpdirty.facts.vm import DirtyRateMeasurement, DirtyRateMode


@dataclass(frozen=True, slots=True)
class DirtyRatePlan:
    """How this VM's dirty rate is measured (from config)."""

    mode: DirtyRateMode
    window_s: float
    sample_pages: int
    interval_s: float


def seconds_until_due(
    plan: DirtyRatePlan, now: float, last_start: float | None, migrating: bool, measuring: bool,
    *, spread: float = 1.0,
) -> float | None:
    """0 when a measurement should start now, a delay otherwise; None while blocked.
    ``spread`` scales this interval (the shell's jitter: VMs that started together must
    not all measure at the same instant, hundreds of them on one host)."""
    if migrating or measuring:
        return None
    if last_start is None:
        return 0.0
    return max(0.0, last_start + plan.interval_s * spread - now)


def choose_mode(configured: DirtyRateMode, version: QemuVersion, has_vfio: bool
                ) -> tuple[DirtyRateMode, str]:
    """The mode to measure with and, when it differs from the configured one, why.

    page-sampling by default; dirty-bitmap only when configured and, on QEMU >= 10.0,
    only without VFIO devices (it would start their dirty tracking for the window);
    dirty-ring only when configured (it froze vCPUs on nested KVM here)."""
    if configured == "page-sampling":
        return configured, ""
    if has_vfio and since(version, TRACKING_STARTED):
        return "page-sampling", (f"{configured} would start VFIO dirty tracking on QEMU "
                                 ">= 10.0; using page-sampling")
    return configured, ""


def error_bound(m: DirtyRateMeasurement, ram_bytes: int | None) -> tuple[float | None, str]:
    """95 % relative error bound of a measurement, and how it was obtained.

    page-sampling hashes ``sample_pages`` pages per GiB and counts those changed over
    the window: the fraction p of RAM dirtied is a binomial proportion, so the figure's
    relative standard error is sqrt((1 - p) / (n p)). dirty-bitmap counts every page:
    no sampling error. Both count a page dirtied twice in the window once."""
    window = f"{m.window_s:g} s window; a page dirtied twice in it counts once"
    if m.mode != "page-sampling":
        return 0.0, f"{m.mode}: every page counted; {window}"
    if not ram_bytes or not m.sample_pages or m.bytes_per_s <= 0 or m.window_s <= 0:
        return None, f"page-sampling; {window}"
    n = m.sample_pages * ram_bytes / 2**30
    p = min(1.0, m.bytes_per_s * m.window_s / ram_bytes)
    if n <= 0 or p >= 1.0:
        return None, f"page-sampling of {n:.0f} pages saturated; {window}"
    rel = 1.96 * math.sqrt((1 - p) / (n * p))
    return rel, f"page-sampling of {n:.0f} pages; {window}"
