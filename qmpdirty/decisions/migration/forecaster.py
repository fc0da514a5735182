"""Per-VM state behind the forecasts (pure core: state, but no I/O and no clock).

Stage: decisions. Keeps what the pure model needs across polls: samples of the
running migration, the last pre-migration dirty-rate measurement, QEMU's migration
parameters and the bandwidth the last migration achieved; the daemon feeds it and
passes the time in. The arithmetic lives in ``decisions.forecast`` and
``decisions.estimate``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from qmpdirty.config.sections import ForecastConfig
from qmpdirty.decisions.migration import estimate
from qmpdirty.decisions.migration.forecast import (
    Advice,
    Forecast,
    ForecastInputs,
    forecast,
    recommend,
)
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.facts.vm import DirtyRateMeasurement, MigrationParams, MigrationSnapshot, VmInfo

#: Where the bandwidth a forecast assumes comes from (the payload's ``bandwidth_source``).
BandwidthSource = Literal["configured", "measured", "max-bandwidth", "unknown"]


@dataclass(frozen=True, slots=True)
class ForecastView:
    """A forecast with its inputs, sources and advice."""

    inputs: ForecastInputs
    forecast: Forecast
    advice: tuple[Advice, ...]
    bandwidth_source: BandwidthSource
    dirty: estimate.DirtyEstimate | None


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
        self.params: MigrationParams | None = None
        self.last_bandwidth: float | None = None  # what the last migration achieved

    def measured(self, m: DirtyRateMeasurement, ts: float) -> None:
        self.measurement, self.measured_at = m, ts

    def begin(self) -> None:
        self.samples.clear()

    def sample(self, ts: float, snap: MigrationSnapshot) -> None:
        self.samples.append(estimate.Sample(ts, snap))

    def ended(self) -> None:
        self.last_bandwidth = estimate.bandwidth(list(self.samples)) or self.last_bandwidth

    def during(self, m: Migration, now: float, info: VmInfo | None, has_vfio: bool
               ) -> ForecastView:
        """The forecast inside ``migration``: from this migration's own samples, else
        QEMU's max-bandwidth."""
        bw, source = first_known((estimate.bandwidth(list(self.samples)), "measured"),
                                 (self._max_bandwidth(), "max-bandwidth"))
        age = now - self.measured_at if self.measured_at is not None else None
        dirty = estimate.dirty_rate(list(self.samples), self.measurement, age)
        snap = m.snapshot
        first = m.passes <= 1
        inputs = ForecastInputs(
            bandwidth_bytes_per_s=bw, dirty_bytes_per_s=dirty.bytes_per_s if dirty else None,
            remaining_bytes=snap.remaining_bytes if snap else None,
            downtime_limit_ms=self._downtime(), vfio_bytes=self._vfio(has_vfio),
            ram_bytes=info.basics.ram_bytes if info else None, in_first_pass=first,
            first_pass_s=estimate.bulk_pass_left_s(list(self.samples), bw) if first else None,
            max_passes=self.cfg.max_passes)
        return self._view(inputs, source, dirty, info, has_vfio)

    def before(self, now: float, info: VmInfo | None, has_vfio: bool) -> ForecastView:
        """The retained ``forecast`` before any migration: configured or last measured
        bandwidth (else QEMU's max-bandwidth), the last measured dirty rate, and all of
        RAM for the first pass (an upper bound: zero pages are nearly free)."""
        bw, source = first_known((self.cfg.bandwidth_bytes_per_s, "configured"),
                                 (self.last_bandwidth, "measured"),
                                 (self._max_bandwidth(), "max-bandwidth"))
        m = self.measurement
        dirty = estimate.DirtyEstimate(m.bytes_per_s, "calc-dirty-rate", m.mode,
                                       f"{m.mode}, {m.window_s:g} s window") if m else None
        inputs = ForecastInputs(
            bandwidth_bytes_per_s=bw, dirty_bytes_per_s=m.bytes_per_s if m else None,
            remaining_bytes=info.basics.ram_bytes if info else None,
            downtime_limit_ms=self._downtime(), vfio_bytes=self._vfio(has_vfio),
            ram_bytes=info.basics.ram_bytes if info else None, max_passes=self.cfg.max_passes)
        return self._view(inputs, source, dirty, info, has_vfio)

    def _view(self, inputs: ForecastInputs, source: BandwidthSource,
              dirty: estimate.DirtyEstimate | None, info: VmInfo | None, has_vfio: bool
              ) -> ForecastView:
        f = forecast(inputs)
        advice = recommend(inputs, f, vcpus=info.vcpus if info else None, has_vfio=has_vfio,
                           qemu_version=info.basics.version if info else (0, 0, 0),
                           kvm=bool(info and info.accel == "kvm"))
        return ForecastView(inputs, f, advice, source, dirty)

    def _max_bandwidth(self) -> float | None:
        p = self.params
        return float(p.max_bandwidth_bytes_per_s) if p and p.max_bandwidth_bytes_per_s else None

    def _downtime(self) -> float | None:
        p = self.params
        return float(p.downtime_limit_ms) if p and p.downtime_limit_ms is not None else None

    def _vfio(self, has_vfio: bool) -> int:
        return self.cfg.vfio_stop_copy_bytes if has_vfio else 0
