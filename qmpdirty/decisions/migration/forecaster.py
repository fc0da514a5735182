"""Per-VM state behind the forecasts (pure core: state, but no I/O and no clock).

Stage: decisions. Keeps what the pure model needs across polls: samples of the
running migration and when its current pass began, the last pre-migration dirty-rate
measurement with its error bound, QEMU's migration parameters, the guest's memory
statistics, and what the last migration showed (its bandwidth, its bulk pass's
content); the daemon feeds it and passes the time in. The arithmetic lives in
``forecast``, ``estimate``, ``firstpass`` and ``uncertainty``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from qmpdirty.config.sections import ForecastConfig
from qmpdirty.decisions.migration import estimate, firstpass
from qmpdirty.decisions.migration.forecast import Advice, Forecast, ForecastInputs, recommend
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.decisions.migration.uncertainty import Outlook, Span, outlook
from qmpdirty.facts.qemu import MAX_BANDWIDTH_DEFAULT, UNKNOWN_VERSION
from qmpdirty.facts.vm import (
    DirtyRateMeasurement,
    GuestMemoryStats,
    GuestResidency,
    MigrationParams,
    MigrationSnapshot,
    VmInfo,
)

#: Where the bandwidth a forecast assumes comes from (the payload's ``bandwidth_source``):
#: ``[forecast] bandwidth_bytes_per_s``, what a migration achieved, a ``max-bandwidth``
#: someone set, or QEMU's default ``max-bandwidth`` that nobody set (a guess).
BandwidthSource = Literal["configured", "measured", "max-bandwidth", "qemu-default", "unknown"]

QEMU_DEFAULT_NOTE = ("bandwidth: QEMU's default max-bandwidth (128 MiB/s), which nobody set: "
                     "a cap, not a measurement; on a slower link the ETA is optimistic (set "
                     "[forecast] bandwidth_bytes_per_s, or it is measured by a migration)")
NO_BOUND_NOTE = "dirty rate: no error bound known; taken as exact"


@dataclass(frozen=True, slots=True)
class ForecastView:
    """A forecast at both ends of its inputs, with their sources and the advice."""

    inputs: ForecastInputs  # the central ones
    outlook: Outlook
    advice: tuple[Advice, ...]
    bandwidth_source: BandwidthSource
    dirty: estimate.DirtyEstimate | None
    content: firstpass.Content | None = None  # the bulk pass's, before a migration
    notes: tuple[str, ...] = ()

    @property
    def forecast(self) -> Forecast:
        """The central run (``eta_s``, ``downtime_ms``, ``passes``)."""
        return self.outlook.central


def first_known(*candidates: tuple[float | None, BandwidthSource]
                ) -> tuple[float | None, BandwidthSource]:
    """The first bandwidth that is known (and not 0), with its source; else unknown."""
    for bandwidth, source in candidates:
        if bandwidth:
            return bandwidth, source
    return None, "unknown"


class Forecaster:
    """One VM's forecasting state."""

    def __init__(self, cfg: ForecastConfig) -> None:
        self.cfg = cfg
        self.samples: deque[estimate.Sample] = deque(maxlen=30)
        self.measurement: DirtyRateMeasurement | None = None
        self.measured_at: float | None = None
        self.error_bound_rel: float | None = None  # of ``measurement``
        self.params: MigrationParams | None = None
        self.guest_memory: GuestMemoryStats | None = None  # the balloon's statistics
        self.residency: GuestResidency | None = None  # what the host backs of its RAM
        #: ``residency`` as it was when this migration began: once the migration reads
        #: the guest's RAM, pages the host never backed map the (huge) zero page, which
        #: ``pagemap`` shows as present
        self._residency_before: GuestResidency | None = None
        self.last_bandwidth: Span | None = None  # what the last migration achieved
        self.previous_content: firstpass.ContentSeen | None = None  # its bulk pass
        self._readings: list[float] = []  # this migration's bandwidth readings
        self._pass: tuple[int | None, float] | None = None  # (sync count, since)

    def measured(self, m: DirtyRateMeasurement, ts: float,
                 error_bound_rel: float | None = None) -> None:
        self.measurement, self.measured_at, self.error_bound_rel = m, ts, error_bound_rel

    def begin(self) -> None:
        self.samples.clear()
        self._readings, self._pass = [], None
        self._residency_before = self.residency

    def sample(self, ts: float, snap: MigrationSnapshot) -> None:
        """A ``query-migrate`` of the running migration: note when a pass began and,
        at the first sign of the second, what the bulk pass sent. A reply identical to
        the last one adds nothing: the forecast is made as of the last figures that
        moved, so a poll that finds nothing new publishes nothing new."""
        if self.samples and self.samples[-1].snapshot == snap:
            return
        self.samples.append(estimate.Sample(ts, snap))
        if snap.bandwidth_bytes_per_s:
            self._readings.append(snap.bandwidth_bytes_per_s)
        sync = snap.dirty_sync_count
        if self._pass is None:
            self._pass = (sync, ts)
        elif sync is not None and sync != self._pass[0]:
            before, since = self._pass
            if sync == 2 and before in (None, 1) and snap.status == "active":
                self.previous_content = firstpass.bulk_content(snap, ts) or \
                    self.previous_content
            # sync 1 is the bulk pass, which began with the migration (seen at setup)
            self._pass = (sync, since if before is None and sync == 1 else ts)

    def ended(self) -> None:
        mean = estimate.bandwidth(list(self.samples))
        if mean and self._readings:
            self.last_bandwidth = Span(min(*self._readings, mean), mean,
                                       max(*self._readings, mean))

    def during(self, m: Migration, now: float, info: VmInfo | None, has_vfio: bool
               ) -> ForecastView:
        """The forecast inside ``migration``: from this migration's own samples, else
        QEMU's max-bandwidth; the bulk pass from what it has sent so far."""
        bw, source = first_known((estimate.bandwidth(list(self.samples)), "measured"),
                                 self._max_bandwidth())
        age = now - self.measured_at if self.measured_at is not None else None
        dirty = estimate.dirty_rate(list(self.samples), self.measurement, age,
                                    self.error_bound_rel)
        snap, first = m.snapshot, m.passes <= 1
        ram = info.basics.ram_bytes if info else None
        left = None
        if first and snap is not None and snap.remaining_bytes is not None:
            prior = firstpass.content_before(ram, self.guest_memory, self.previous_content,
                                             now, self._dirtied(),
                                             resident=self._residency_before) if ram else None
            left = firstpass.content_left(snap, prior, self._residency_before)
        wire = _wire(left, float(snap.remaining_bytes or 0) if snap else 0.0)
        inputs = ForecastInputs(
            bandwidth_bytes_per_s=bw, dirty_bytes_per_s=dirty.bytes_per_s if dirty else None,
            remaining_bytes=snap.remaining_bytes if snap else None,
            downtime_limit_ms=self._downtime(), vfio_bytes=self._vfio(has_vfio),
            ram_bytes=ram, in_first_pass=first,
            first_pass_bytes=wire.central if wire else None, max_passes=self.cfg.max_passes,
            pass_elapsed_s=self._pass_elapsed())
        bound = dirty.error_bound_rel if dirty else None
        spans = _dirty_span(inputs.dirty_bytes_per_s, bound)
        notes = (NO_BOUND_NOTE,) if dirty is not None and bound is None else ()
        return self._view(inputs, source, dirty, info, has_vfio, dirty_span=spans,
                          first_pass=wire, notes=notes)

    def before(self, now: float, info: VmInfo | None, has_vfio: bool) -> ForecastView:
        """The retained ``forecast`` before any migration: configured or last measured
        bandwidth (else QEMU's max-bandwidth), the last measured dirty rate with its
        bound, and the bulk pass from what the guest's memory is known to hold."""
        bw, source = first_known((self.cfg.bandwidth_bytes_per_s, "configured"),
                                 (self.last_bandwidth.central if self.last_bandwidth
                                  else None, "measured"),
                                 self._max_bandwidth())
        m, ram = self.measurement, info.basics.ram_bytes if info else None
        dirty = estimate.DirtyEstimate(m.bytes_per_s, "calc-dirty-rate", m.mode,
                                       f"{m.mode}, {m.window_s:g} s window",
                                       self.error_bound_rel) if m else None
        content = firstpass.content_before(ram, self.guest_memory, self.previous_content,
                                           now, self._dirtied(), resident=self.residency) \
            if ram else None
        wire = _wire(content.bytes if content else None, float(ram or 0))
        inputs = ForecastInputs(
            bandwidth_bytes_per_s=bw, dirty_bytes_per_s=m.bytes_per_s if m else None,
            remaining_bytes=ram, downtime_limit_ms=self._downtime(),
            vfio_bytes=self._vfio(has_vfio), ram_bytes=ram,
            first_pass_bytes=wire.central if wire else None, max_passes=self.cfg.max_passes)
        notes = [QEMU_DEFAULT_NOTE] if source == "qemu-default" else []
        if m is not None and self.error_bound_rel is None:
            notes.append(NO_BOUND_NOTE)
        if content is not None:
            notes.append(f"first pass: {content.basis}")
        return self._view(inputs, source, dirty, info, has_vfio,
                          dirty_span=_dirty_span(inputs.dirty_bytes_per_s,
                                                 self.error_bound_rel),
                          bandwidth=self.last_bandwidth if source == "measured" else None,
                          first_pass=wire, content=content, notes=tuple(notes))

    def _view(self, inputs: ForecastInputs, source: BandwidthSource,
              dirty: estimate.DirtyEstimate | None, info: VmInfo | None, has_vfio: bool, *,
              dirty_span: Span | None = None, bandwidth: Span | None = None,
              first_pass: Span | None = None, content: firstpass.Content | None = None,
              notes: tuple[str, ...] = ()) -> ForecastView:
        o = outlook(inputs, dirty=dirty_span, bandwidth=bandwidth, first_pass=first_pass)
        # advice for the end that does not converge: the central one, or the worst one
        on, f = (o.worst_inputs, o.worst) if o.verdict == "uncertain" and o.worst_inputs \
            else (inputs, o.central)
        advice = recommend(on, f, vcpus=info.vcpus if info else None, has_vfio=has_vfio,
                           qemu_version=info.basics.version if info else UNKNOWN_VERSION,
                           kvm=bool(info and info.accel == "kvm"))
        return ForecastView(inputs, o, advice, source, dirty, content, notes)

    def _dirtied(self) -> float:
        """Bytes the guest dirtied in one window of the last measurement (low end: each
        by the measurement's bound): pages with content, however little else it has."""
        m, bound = self.measurement, self.error_bound_rel
        if m is None:
            return 0.0
        return m.bytes_per_s * max(0.0, 1 - (bound or 0.0)) * m.window_s

    def _pass_elapsed(self) -> float:
        """How long the pass under way had run at the last figures that moved."""
        if self._pass is None or not self.samples:
            return 0.0
        return max(0.0, self.samples[-1].ts - self._pass[1])

    def _max_bandwidth(self) -> tuple[float | None, BandwidthSource]:
        """QEMU's ``max-bandwidth``: ``qemu-default`` when it is the value nobody set."""
        p = self.params
        value = p.max_bandwidth_bytes_per_s if p else None
        return (float(value) if value else None,
                "qemu-default" if value == MAX_BANDWIDTH_DEFAULT else "max-bandwidth")

    def _downtime(self) -> float | None:
        p = self.params
        return float(p.downtime_limit_ms) if p and p.downtime_limit_ms is not None else None

    def _vfio(self, has_vfio: bool) -> int:
        return self.cfg.vfio_stop_copy_bytes if has_vfio else 0


def _dirty_span(rate: float | None, bound: float | None) -> Span | None:
    return Span.relative(rate, bound) if rate is not None and bound else None


def _wire(content: Span | None, covered: float) -> Span | None:
    """A content range as bytes on the wire for a pass over ``covered`` bytes."""
    if content is None:
        return None
    return Span(firstpass.wire_bytes(content.low, covered),
                firstpass.wire_bytes(content.central, covered),
                firstpass.wire_bytes(content.high, covered))
