"""QEMU's page-sampling readings as exact probability distributions (lab; pure).

For benchmarks and tests, where a guest cannot be run (64 GiB of dirtied RAM under
TCG): the distribution of what one ``calc-dirty-rate`` window reports, and of the
figure qmpdirty publishes from several (computed by the product's own
``decisions.migration.dirtyrate.combine``), hence its median and 95th-percentile
error and how often its published bound holds.

The model of one window (migration/dirtyrate.c): one RAMBlock of ``ram_bytes``;
n = ram * s >> 30 pages drawn uniformly with replacement; each is dirty with
probability p = min(R * T, W) / RAM, independently, so the dirty count is binomial;
the reading is ``dirty * ram_MiB * 1000 // (n * msec)`` (``update_dirtyrate``).
Left out: the few samples of ROM blocks, the dirtier's pacing, the effect of hashing
time on each page's window, a guest's own background writes. Must not do I/O nor
re-implement the figure: ``combine`` makes it, here as in the daemon.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from qmpdirty.decisions.migration.dirtyrate import combine, pages_per_window
from qmpdirty.facts.vm import DirtyRateMeasurement

MIB = 2**20
_TAIL = 1e-13  # probabilities below this are dropped (with 12 sd of margin)


@dataclass(frozen=True, slots=True)
class ModelledError:
    """Errors of the published figure relative to the true rate, over its distribution."""

    median_rel: float
    p95_rel: float
    bound_coverage: float  # P(|figure - R| <= bound * figure); a missing bound fails
    median_bound_rel: float | None


@dataclass(frozen=True, slots=True)
class Guest:
    """A guest of ``ram_bytes`` dirtying ``rate_mib_s`` over a working set of ``wss_mib``."""

    ram_bytes: int
    rate_mib_s: float
    wss_mib: float = 512.0


def reading_pmf(guest: Guest, sample_pages: int, window_ms: int = 1000) -> dict[int, float]:
    """Distribution of one window's reading (whole MiB/s), as QEMU computes it."""
    n = pages_per_window(guest.ram_bytes, sample_pages)
    ram_mib = guest.ram_bytes // MIB
    dirtied = min(guest.rate_mib_s * window_ms / 1000, guest.wss_mib)
    p = min(1.0, dirtied / (guest.ram_bytes / MIB))
    pmf: dict[int, float] = defaultdict(float)
    for dirty, prob in _binomial(n, p):
        pmf[dirty * ram_mib * 1000 // (n * window_ms)] += prob
    return dict(pmf)


def figure_errors(guest: Guest, sample_pages: int, windows: int, window_ms: int = 1000
                  ) -> ModelledError:
    """The errors of ``combine``'s figure made of ``windows`` windows."""
    one = reading_pmf(guest, sample_pages, window_ms)
    total = {0: 1.0}
    for _ in range(windows):
        total = _convolve(total, one)
    rate = guest.rate_mib_s
    errors: list[tuple[float, float]] = []
    bounds: list[tuple[float, float]] = []
    covered = 0.0
    for whole_sum, prob in total.items():
        figure, bound = _figure(whole_sum, windows, sample_pages, window_ms, guest.ram_bytes)
        errors.append((abs(figure - rate) / rate, prob))
        if bound is not None:
            bounds.append((bound, prob))
            covered += prob if abs(figure - rate) <= bound * figure + 1e-9 else 0.0
    return ModelledError(_quantile(errors, 0.5), _quantile(errors, 0.95), covered,
                         _quantile(bounds, 0.5) if bounds else None)


def raw_errors(guest: Guest, sample_pages: int, window_ms: int = 1000) -> ModelledError:
    """The errors of QEMU's own reading, as it reports it (one window, truncated)."""
    pmf = reading_pmf(guest, sample_pages, window_ms)
    rate = guest.rate_mib_s
    errors = [(abs(r - rate) / rate, prob) for r, prob in pmf.items()]
    return ModelledError(_quantile(errors, 0.5), _quantile(errors, 0.95), 0.0, None)


def _figure(whole_sum: int, windows: int, sample_pages: int, window_ms: int, ram_bytes: int
            ) -> tuple[float, float | None]:
    """``combine`` of ``windows`` readings adding up to ``whole_sum`` (it depends on
    the sum only): figure in MiB/s and bound."""
    base, extra = divmod(whole_sum, windows)
    readings = [DirtyRateMeasurement(bytes_per_s=float((base + (i < extra)) * MIB),
                                     mode="page-sampling", window_s=window_ms / 1000,
                                     sample_pages=sample_pages, started_at_s=None)
                for i in range(windows)]
    figure, bound, _ = combine(readings, ram_bytes)
    return figure.bytes_per_s / MIB, bound


def _binomial(n: int, p: float) -> list[tuple[int, float]]:
    """(k, P(k)) of Binomial(n, p) over all k but negligible tails."""
    if p <= 0.0 or n == 0:
        return [(0, 1.0)]
    if p >= 1.0:
        return [(n, 1.0)]
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    low, high = max(0, int(mean - 12 * sd) - 10), min(n, int(mean + 12 * sd) + 10)
    log_n, log_p, log_q = math.lgamma(n + 1), math.log(p), math.log1p(-p)
    out = []
    for k in range(low, high + 1):
        prob = math.exp(log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                        + k * log_p + (n - k) * log_q)
        if prob > _TAIL:
            out.append((k, prob))
    return out


def _convolve(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    out: dict[int, float] = defaultdict(float)
    for x, px in a.items():
        for y, py in b.items():
            if px * py > _TAIL:
                out[x + y] += px * py
    return dict(out)


def _quantile(weighted: list[tuple[float, float]], q: float) -> float:
    """The q-quantile of a discrete distribution given as (value, probability)."""
    mass = sum(p for _, p in weighted)
    running = 0.0
    for value, prob in sorted(weighted):
        running += prob
        if running >= q * mass - 1e-12:
            return value
    return max(v for v, _ in weighted)
