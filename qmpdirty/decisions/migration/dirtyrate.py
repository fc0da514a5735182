"""When to measure the dirty rate, how, and what the readings say (pure core).

Stage: decisions. Must not do I/O or talk to QEMU: the shell (``daemon.dirty_rate``)
starts the windows planned here and hands QEMU's readings to ``combine``.

Scheduling. QEMU runs one ``calc-dirty-rate`` at a time per VM ("the dirty rate is
already being measured" otherwise) and a measurement during a migration competes with
it, so a measurement starts only when none is running, no migration is active and the
interval since the last start has passed.

What QEMU computes (migration/dirtyrate.c; the same arithmetic from 8.0 to 10.0). For each
migratable RAMBlock of at least 128 KiB (``skip_sample_ramblock`` compares with
``MIN_RAMBLOCK_SIZE << 10``; the header's "megabytes" is wrong), it hashes
``used_length * sample_pages >> 30`` pages drawn with replacement
(``get_ramblock_dirty_info``, ``save_ramblock_hash``), hashes them again after the
window, and reports ``dirty * block_MiB * 1000 / (samples * msec)`` in integer MiB/s,
truncated (``update_dirtyrate``). Hence:

* a window of T s at s pages per GiB expects d = s * R * T / 1024 dirty samples at R
  MiB/s, whatever the RAM: precision costs pages per GiB and seconds, while the cost
  (two 4 KiB hashes per sample) grows with RAM too;
* truncation loses [0, 1) MiB/s per reading: 25 % at 4 MiB/s however well sampled.

The method (``plan_measurement``, ``combine``): ``windows`` back-to-back windows, with
pages per GiB chosen so that all of them together hash ``sample_budget_pages`` pages,
within QEMU's [128, 16384]; the figure is the mean reading plus half a unit (the
sampling noise dithers the truncation, so its mean loss is half a unit); its 95 % bound
adds the binomial error of all windows to what is left of the truncation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from qmpdirty.facts.qemu import (
    SAMPLE_PAGES_DEFAULT,
    SAMPLE_PAGES_MAX,
    SAMPLE_PAGES_MIN,
    TRACKING_STARTED,
    QemuVersion,
    release_text,
    since,
)
from qmpdirty.facts.vm import DirtyRateMeasurement, DirtyRateMode

MIB = 2**20
GIB = 2**30
#: Two-sided 95 % normal quantile.
Z95 = 1.96


@dataclass(frozen=True, slots=True)
class DirtyRatePlan:
    """How this VM's dirty rate is measured: ``windows`` back-to-back ``calc-dirty-rate``
    windows of ``window_s``, each sampling ``sample_pages`` pages per GiB."""

    mode: DirtyRateMode
    window_s: float
    sample_pages: int
    interval_s: float
    windows: int = 1


class DirtyRateSettings(Protocol):
    """The ``[dirty_rate]`` keys a plan is made from (``config.sections.DirtyRateConfig``)."""

    @property
    def window_s(self) -> float: ...
    @property
    def interval_s(self) -> float: ...
    @property
    def sample_pages(self) -> int | None: ...
    @property
    def sample_budget_pages(self) -> int: ...
    @property
    def windows(self) -> int: ...


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
                                 f">= {release_text(TRACKING_STARTED)}; using page-sampling")
    return configured, ""


def sample_pages_for(ram_bytes: int | None, budget_pages: int, windows: int) -> int:
    """Pages per GiB so that ``windows`` windows hash ``budget_pages`` pages in all,
    clamped to what ``calc-dirty-rate`` accepts (``is_sample_pages_valid``): small
    guests stop at 16384 per GiB (under budget), guests over ``budget / (windows * 128)``
    GiB at 128 (over it). RAM unknown: QEMU's own default."""
    if not ram_bytes or ram_bytes <= 0:
        return SAMPLE_PAGES_DEFAULT
    wanted = budget_pages * GIB // (max(1, windows) * ram_bytes)
    return min(SAMPLE_PAGES_MAX, max(SAMPLE_PAGES_MIN, wanted))


def pages_per_window(ram_bytes: int, sample_pages: int) -> int:
    """Pages one window hashes (twice) on a guest whose RAM is one block:
    ``get_ramblock_dirty_info``'s ``used_length * sample_pages >> 30``."""
    return ram_bytes * sample_pages >> 30


def plan_measurement(settings: DirtyRateSettings, mode: DirtyRateMode, ram_bytes: int | None
                     ) -> DirtyRatePlan:
    """The plan of one measurement. page-sampling: ``settings.windows`` windows, but no
    more than fit in ``interval_s`` (a measurement ends before the next is due), and
    ``settings.sample_pages`` per GiB when set (an explicit override), else as the
    budget allows. dirty-bitmap and dirty-ring count every page: one window (more
    would only prolong their dirty logging; ``sample_pages`` is not sent for them)."""
    if mode != "page-sampling":
        return DirtyRatePlan(mode, settings.window_s, SAMPLE_PAGES_DEFAULT, settings.interval_s)
    fit = math.floor(settings.interval_s / settings.window_s + 1e-9)
    windows = max(1, min(settings.windows, fit))
    per_gib = settings.sample_pages or sample_pages_for(
        ram_bytes, settings.sample_budget_pages, windows)
    return DirtyRatePlan(mode, settings.window_s, per_gib, settings.interval_s, windows)


def combine(readings: Sequence[DirtyRateMeasurement], ram_bytes: int | None
            ) -> tuple[DirtyRateMeasurement, float | None, str]:
    """The figure of one measurement's windows (``readings``, in order, one mode), its
    95 % relative error bound (None when unknown) and how it was obtained.

    QEMU truncates each reading to whole MiB/s (dirty-ring: each vCPU's), so the figure
    is the mean reading plus half a unit per truncated term, or 0 when every window read
    0 (below 1 MiB/s). A negative reading (QEMU found no block to compare) is dropped."""
    valid = [r for r in readings if r.bytes_per_s >= 0]
    first = valid[0] if valid else replace(readings[0], bytes_per_s=0.0)
    k = max(1, len(valid))
    whole = [round(r.bytes_per_s / MIB) for r in valid]
    terms = max(1, len(first.vcpu_bytes_per_s)) if first.mode == "dirty-ring" else 1
    mib_s = sum(whole) / k + 0.5 * terms if any(whole) else 0.0
    per_window = None
    if first.mode == "page-sampling" and first.sample_pages and ram_bytes:
        per_window = pages_per_window(ram_bytes, first.sample_pages)
    figure = replace(first, bytes_per_s=mib_s * MIB, windows=k,
                     window_s=sum(r.window_s for r in valid) / k if valid else first.window_s,
                     sample_pages_total=per_window * k if per_window is not None else None)
    bound, note = _bound(figure, terms, ram_bytes)
    return figure, bound, _basis(figure, per_window, note)


def _bound(m: DirtyRateMeasurement, terms: int, ram_bytes: int | None
           ) -> tuple[float | None, str]:
    """95 % relative bound of ``combine``'s figure, and a note when there is none.

    Sampling: one window's reading has variance R * c * (1 - p) in (MiB/s)^2, where
    c = 1024 / (pages per GiB * T) is what one dirty sample is worth in MiB/s and
    p = R * T / RAM (the dirty-sample count is binomial; one more dirty sample than
    observed keeps small counts from looking precise). Truncation: once the sampling
    noise spans a unit, each window's residual is uniform on +-0.5 (variance 1/12) and
    independent; without noise (a counting mode) it is a fixed offset of up to 0.5 per
    term. The weight w = exp(-2 pi^2 sigma^2), the damping of the floor's first
    harmonic by the noise, moves between the two."""
    mib_s = m.bytes_per_s / MIB
    if mib_s <= 0:
        return None, "below 1 MiB/s in every window" if m.windows > 1 else "below 1 MiB/s"
    if m.mode != "page-sampling" or not m.sample_pages:
        return _round_up(0.5 * terms / mib_s), ""
    p = mib_s * MIB * m.window_s / ram_bytes if ram_bytes else 0.0
    if p >= 1.0 or m.window_s <= 0:
        return None, "saturated: the window dirtied all of RAM"
    per_sample = GIB / MIB / (m.sample_pages * m.window_s)
    sigma2 = (mib_s + per_sample / m.windows) * per_sample * (1.0 - p)
    w = math.exp(-2.0 * math.pi**2 * sigma2)
    variance = (sigma2 + (1.0 - w) / 12.0) / m.windows
    return _round_up((Z95 * math.sqrt(variance) + 0.5 * w) / mib_s), ""


def _basis(m: DirtyRateMeasurement, per_window: int | None, note: str) -> str:
    """How the figure was obtained, in one line."""
    windows = f"{m.windows} x {m.window_s:.3g} s windows" if m.windows > 1 \
        else f"{m.window_s:.3g} s window"
    if m.mode == "page-sampling":
        pages = f"{per_window} pages each" if per_window is not None else "pages"
        how = f"page-sampling, {windows}, {pages} ({m.sample_pages}/GiB)"
    else:
        how = f"{m.mode}: every page counted, {windows}"
    if m.bytes_per_s > 0:
        how += "; mean reading" if m.windows > 1 else "; reading"
        how += " + 0.5 MiB/s per truncated figure (QEMU truncates to whole MiB/s)"
    notes = f"; {note}" if note else ""
    return f"{how}{notes}; a page dirtied twice in a window counts once"


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (0.07203 -> 0.073): never below."""
    if x <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return round(math.ceil(x / step - 1e-9) * step, max(0, -round(math.log10(step))))
