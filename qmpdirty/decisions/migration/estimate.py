"""Bandwidth and dirty rate, estimated from ``query-migrate`` samples (pure core).

Stage: decisions. QEMU's ``ram.dirty-pages-rate`` stays 0 until the first full pass
has ended (its second dirty sync) - seconds or minutes into a slow migration. Until
then the dirty rate is estimated (``source: estimate``): first from the last
pre-migration ``calc-dirty-rate`` measurement when recent, else from the samples:
remaining falls by the pages processed and rises by pages re-dirtied after being
sent, so ``(d remaining + d processed) / dt`` is the re-dirty rate of the part
already sent, scaled up by the share of RAM sent so far. Each estimate carries its
95 % relative error bound when one is known: QEMU's own figure counts every page dirtied
in its last sync period (0), an estimate from a measurement keeps the measurement's, the
slope has none. What the bulk pass sends is ``decisions.migration.firstpass``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from qmpdirty.facts.vm import DirtyRateMeasurement, MigrationSnapshot

#: Who produced a dirty rate (the ``source`` of the ``dirty_rate`` payload): a
#: ``calc-dirty-rate`` qmpdirty asked for, QEMU's own figure during a migration, or
#: qmpdirty's estimate.
DirtySource = Literal["calc-dirty-rate", "migration", "estimate"]
#: How the dirty pages were counted (the payload's ``mode``), besides calc-dirty-rate's
#: own modes (page-sampling, dirty-bitmap, dirty-ring): the migration's dirty bitmap,
#: synced at every pass (``ram.dirty-pages-rate``), or the slope of its progress.
MIGRATION_BITMAP = "migration-bitmap"
PROGRESS_SLOPE = "progress-slope"

#: A pre-migration measurement older than this does not stand for the guest now.
PRE_MIGRATION_MAX_AGE_S = 600.0


@dataclass(frozen=True, slots=True)
class Sample:
    ts: float
    snapshot: MigrationSnapshot


@dataclass(frozen=True, slots=True)
class DirtyEstimate:
    bytes_per_s: float
    source: DirtySource  # "migration" (QEMU's own), "estimate" or "calc-dirty-rate"
    mode: str  # how the pages were counted: a calc-dirty-rate mode or one of the above
    basis: str  # how it was obtained, for the payload's provenance
    error_bound_rel: float | None = None  # 95 % relative bound; None when unknown


def bandwidth(samples: Sequence[Sample]) -> float | None:
    """Smoothed bandwidth: mean of the last three non-zero ``ram.mbps`` readings."""
    seen = [s.snapshot.bandwidth_bytes_per_s for s in samples[-3:]
            if s.snapshot.bandwidth_bytes_per_s]
    return sum(seen) / len(seen) if seen else None


def _processed(s: MigrationSnapshot) -> int | None:
    if s.page_size is None or s.normal_pages is None or s.zero_pages is None:
        return None
    return (s.normal_pages + s.zero_pages) * s.page_size


def dirty_rate(samples: Sequence[Sample], pre: DirtyRateMeasurement | None,
               pre_age_s: float | None, pre_bound: float | None = None
               ) -> DirtyEstimate | None:
    """QEMU's rate once it has one, else the best estimate, else None; ``pre_bound`` is
    the pre-migration measurement's error bound."""
    if samples and samples[-1].snapshot.dirty_bytes_per_s:
        return DirtyEstimate(samples[-1].snapshot.dirty_bytes_per_s or 0.0, "migration",
                             MIGRATION_BITMAP, "ram.dirty-pages-rate x page-size", 0.0)
    if pre is not None and pre_age_s is not None and pre_age_s <= PRE_MIGRATION_MAX_AGE_S:
        return DirtyEstimate(pre.bytes_per_s, "estimate", pre.mode,
                             f"last {pre.mode} measurement, {pre_age_s:.0f} s before",
                             pre_bound)
    return _from_slope(samples)


def _from_slope(samples: Sequence[Sample]) -> DirtyEstimate | None:
    if len(samples) < 2:
        return None
    a, b = samples[0], samples[-1]
    pa, pb = _processed(a.snapshot), _processed(b.snapshot)
    ra, rb = a.snapshot.remaining_bytes, b.snapshot.remaining_bytes
    total = b.snapshot.total_bytes
    dt = b.ts - a.ts
    if pa is None or pb is None or ra is None or rb is None or not total or dt <= 0:
        return None
    redirty = max(0.0, (rb - ra + pb - pa) / dt)
    sent_share = min(1.0, max(pb / total, 0.05))
    return DirtyEstimate(redirty / sent_share, "estimate", PROGRESS_SLOPE,
                         f"remaining/processed slope over {dt:.1f} s, scaled by the "
                         f"{sent_share:.0%} of RAM sent")
