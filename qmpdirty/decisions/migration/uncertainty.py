"""The forecast at both ends of what its inputs may be (pure core).

Stage: decisions. design.md: "a measurement carries its error bound, and anything
computed from it carries the resulting range or says uncertain". Three inputs of the
model are ranges (``Span``): the dirty rate D (its reading x (1 -+ ``error_bound_rel``)),
the bandwidth B (a point unless it was estimated from a range) and what the bulk pass
sends (``decisions.migration.firstpass``). The model runs three times:

* **central**: every input at its central value (``eta_s``, ``downtime_ms``);
* **best**: least dirtying, most bandwidth, least content, and a stop-copy phase that
  takes no time (QEMU lifts ``max-bandwidth`` for it: ``eta_s_low``);
* **worst**: most dirtying, least bandwidth, most content (``eta_s_high``).

More dirtying, less bandwidth or more content never shortens a migration nor makes one
converge that did not, so the three bound the verdict and the ETA: both ends converge
(``converges``), neither does (``does-not-converge``), or only the best one does
(``uncertain``, ``converges: null``; ``eta_s_high`` null: it may never end). The
downtime is not monotone (the last pass can land anywhere under the budget): its range
is that of the three runs. Must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from qmpdirty.decisions.migration.forecast import Forecast, ForecastInputs, forecast

#: What the model says at both ends of its inputs (``verdict`` of the payloads, besides
#: the claim's own ``blocked`` and ``not-applicable``).
ModelVerdict = Literal["converges", "does-not-converge", "uncertain", "unknown"]


@dataclass(frozen=True, slots=True)
class Span:
    """A value with the low and high ends of what it may be (low <= central <= high)."""

    low: float
    central: float
    high: float

    @classmethod
    def point(cls, value: float) -> Span:
        return cls(value, value, value)

    @classmethod
    def relative(cls, value: float, bound_rel: float | None) -> Span:
        """``value`` x (1 -+ ``bound_rel``), never below 0; a point when the bound is
        unknown (the caller says so)."""
        rel = max(0.0, bound_rel or 0.0)
        return cls(max(0.0, value * (1 - rel)), value, value * (1 + rel))


@dataclass(frozen=True, slots=True)
class Outlook:
    """The model's three runs and the inputs' ranges they came from."""

    central: Forecast
    best: Forecast
    worst: Forecast
    dirty: Span | None = None
    bandwidth: Span | None = None
    first_pass: Span | None = None  # wire bytes of the bulk pass
    worst_inputs: ForecastInputs | None = None  # what ``worst`` ran on (for advice)

    @classmethod
    def single(cls, f: Forecast) -> Outlook:
        """One run that is all three (no range known, or no figures at all)."""
        return cls(f, f, f)

    @property
    def verdict(self) -> ModelVerdict:
        best, worst = self.best.converges, self.worst.converges
        if self.central.converges is None or best is None or worst is None:
            return "unknown"
        if best and worst:
            return "converges"
        return "uncertain" if best else "does-not-converge"

    @property
    def converges(self) -> bool | None:
        """The published ``converges``: true or false only when both ends agree."""
        return {"converges": True, "does-not-converge": False}.get(self.verdict)

    @property
    def eta_s_low(self) -> float | None:
        return self.best.eta_s

    @property
    def eta_s_high(self) -> float | None:
        return self.worst.eta_s

    @property
    def downtime_ms_low(self) -> float | None:
        found = self._downtimes()
        return min(found) if found else None

    @property
    def downtime_ms_high(self) -> float | None:
        found = self._downtimes()
        return max(found) if found else None

    def _downtimes(self) -> list[float]:
        return [f.downtime_ms for f in (self.best, self.central, self.worst)
                if f.downtime_ms is not None]


def outlook(i: ForecastInputs, *, dirty: Span | None = None, bandwidth: Span | None = None,
            first_pass: Span | None = None) -> Outlook:
    """Run the model on ``i`` (its central inputs) and at both ends of the ranges given;
    a range left out is taken as exact. ``first_pass`` is in wire bytes, as
    ``ForecastInputs.first_pass_bytes``."""
    central = forecast(i)
    if dirty is None and bandwidth is None and first_pass is None:
        return Outlook.single(central)
    worst_inputs = _at(i, dirty, bandwidth, first_pass, worst=True)
    best = forecast(_at(i, dirty, bandwidth, first_pass, worst=False))
    return Outlook(central, best, forecast(worst_inputs), dirty, bandwidth, first_pass,
                   worst_inputs)


def _at(i: ForecastInputs, dirty: Span | None, bandwidth: Span | None,
        first_pass: Span | None, *, worst: bool) -> ForecastInputs:
    def end(s: Span | None, central: float | None, high: bool) -> float | None:
        if s is None or central is None:
            return central
        return s.high if high else s.low

    return replace(
        i, dirty_bytes_per_s=end(dirty, i.dirty_bytes_per_s, worst),
        bandwidth_bytes_per_s=end(bandwidth, i.bandwidth_bytes_per_s, not worst),
        first_pass_bytes=end(first_pass, i.first_pass_bytes, worst),
        stop_counted=i.stop_counted and worst)
