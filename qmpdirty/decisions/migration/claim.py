"""What the retained ``forecast`` may claim, given the VM's role and blockers (pure core).

Stage: decisions. The model (``forecast``) answers "would pre-copy converge?"; this
module decides what of that answer may be published (design.md § What the published
state must mean):

* a VM whose role has no pre-migration forecast (``role.forecast_applies``: a
  destination, a paused, migrating or migrated-away guest...) gets the verdict
  ``not-applicable``, ``applicable: false`` and the role's reason, and no figures;
* a VM that QEMU refuses to migrate (``blockers`` not migratable) gets ``blocked``,
  names its blockers, and no figures: the model never says ``converges: true`` then;
* otherwise the model's answer at both ends of its inputs (``uncertainty``):
  ``converges``, ``does-not-converge``, ``uncertain`` (only the favourable end
  converges) or ``unknown`` (an input is missing).

``material_change`` says whether a new claim is worth publishing before the periodic
refresh. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.decisions.migration.forecast import Advice, Forecast
from qmpdirty.decisions.migration.uncertainty import Outlook
from qmpdirty.decisions.role import RoleVerdict, forecast_applies
from qmpdirty.decisions.vfio.blockers import Reconciled

#: The retained forecast's ``verdict`` (README § Dirty rate, forecast and advice).
ForecastVerdict = Literal["converges", "does-not-converge", "uncertain", "blocked",
                          "not-applicable", "unknown"]


@dataclass(frozen=True, slots=True)
class BlockerState:
    """Whether QEMU would migrate the VM now, and the blockers by name (QEMU's own
    ``blocked-reasons`` first, then predicted ones it does not report)."""

    migratable: bool
    texts: tuple[str, ...] = ()


def blocker_state(r: Reconciled) -> BlockerState:
    """What the forecast needs of a VFIO evaluation: QEMU's verdict and every blocker."""
    observed = set(r.observed)
    return BlockerState(r.migratable, (*r.observed, *(b.text for b in r.predicted
                                                      if b.text not in observed)))


@dataclass(frozen=True, slots=True)
class ForecastClaim:
    """What the retained ``forecast`` says: a verdict, whether it applies and why not,
    the blockers, and the model's figures (its three runs) and advice (empty unless they
    are claimed)."""

    verdict: ForecastVerdict
    applicable: bool
    reason: str | None
    blockers: tuple[str, ...]
    outlook: Outlook
    advice: tuple[Advice, ...]

    @property
    def forecast(self) -> Forecast:
        """The central figures."""
        return self.outlook.central

    @property
    def converges(self) -> bool | None:
        """The published ``converges``: true only with ``verdict: converges``, false only
        with ``does-not-converge``."""
        return {"converges": True, "does-not-converge": False}.get(self.verdict)


_NO_FIGURES = Outlook.single(Forecast(None, None, None, None))


def claim(role: RoleVerdict, blockers: BlockerState | None, o: Outlook,
          advice: tuple[Advice, ...]) -> ForecastClaim:
    """The claim for a VM in ``role`` with ``blockers`` (None: not evaluated, e.g.
    ``[vfio] enabled = false``) of the model's outlook ``o`` and its ``advice``."""
    named = blockers.texts if blockers is not None and not blockers.migratable else ()
    if not forecast_applies(role):
        return ForecastClaim("not-applicable", False, role.reason, named, _NO_FIGURES, ())
    if blockers is not None and not blockers.migratable:
        why = "QEMU refuses to migrate it: " + ("; ".join(named) or "no reason given")
        return ForecastClaim("blocked", True, why, named, _NO_FIGURES, ())
    return ForecastClaim(o.verdict, True, None, (), o, advice)


#: A new dirty-rate measurement republishes the retained ``forecast`` only when it moves
#: it at least this much (relative); the periodic refresh carries smaller drifts. At
#: 1,000 VMs measured every 5 s, unchanged forecasts were 230 of 530 messages/s.
MATERIAL_CHANGE = 0.10


def material_change(before: ForecastClaim | None, after: ForecastClaim,
                    rel: float = MATERIAL_CHANGE) -> bool:
    """Whether ``after`` says something ``before`` did not: another verdict, reason or
    set of blockers, pass count, note or set of recommendations, or an ETA, downtime
    (central or either end of its range) or recommended value that moved by more than
    ``rel`` of its published value (or appeared, or vanished)."""
    if before is None:
        return True
    if (before.verdict, before.reason, before.blockers) != (
            after.verdict, after.reason, after.blockers):
        return True
    f0, a0, f1, a1 = before.forecast, before.advice, after.forecast, after.advice
    if (f0.converges, f0.passes, f0.notes) != (f1.converges, f1.passes, f1.notes):
        return True
    if [(a.action, a.applicable) for a in a0] != [(a.action, a.applicable) for a in a1]:
        return True
    o0, o1 = before.outlook, after.outlook
    pairs = [(f0.eta_s, f1.eta_s), (f0.downtime_ms, f1.downtime_ms),
             (o0.eta_s_low, o1.eta_s_low), (o0.eta_s_high, o1.eta_s_high),
             (o0.downtime_ms_low, o1.downtime_ms_low),
             (o0.downtime_ms_high, o1.downtime_ms_high),
             *((x.value, y.value) for x, y in zip(a0, a1, strict=True))]
    return any(_moved(x, y, rel) for x, y in pairs)


def _moved(x: float | None, y: float | None, rel: float) -> bool:
    if x is None or y is None:
        return (x is None) != (y is None)
    return abs(y - x) > rel * abs(x) if x else y != x  # relative to the published value
