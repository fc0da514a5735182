"""How a VFIO decision was reached: the facts it rested on, each with its basis (pure core).

Stage: decisions. While ``realize`` and ``tracking`` replay QEMU, every fact they
consult (a host fact, a QOM property, a default for an unknown fact) is recorded as
one ``Evidence``. A device mode, a container engine or a predicted blocker is then as
good as its weakest evidence (``facts.fact.BASES``: host, qemu, driver, assumed), and
says why (``summary``). Evidence of basis ``assumed`` is a fact nobody could know: it
makes ``tracking.complete`` false and is what ``blockers.unknown_facts`` names behind a
disagreement with QEMU. Must not decide anything itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qmpdirty.facts.fact import Basis, Fact, weakest


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact a decision rested on: its name, the value used, its basis and why."""

    fact: str  # "migration", "dma_logging", "iommu_dirty_tracking", "p2p", "enable-migration"..
    value: bool | str
    basis: Basis
    reason: str
    device: str | None = None  # qom path of the device it is about

    @property
    def known(self) -> bool:
        return self.basis != "assumed"


def used(fact: Fact[bool] | None, name: str, default: bool, what: str, device: str
         ) -> Evidence:
    """The value a decision uses for a host fact: the fact's, or ``default`` when it is
    unknown (then basis ``assumed`` and the reason says so)."""
    if fact is not None and fact.value is not None:
        return Evidence(name, fact.value, fact.basis, fact.source, device)
    why = fact.source if fact is not None else "unknown: no host facts for this device"
    return Evidence(name, default, "assumed",
                    f"assumes {what}={'yes' if default else 'no'} ({why})", device)


def read(name: str, value: bool | str, reason: str, device: str | None) -> Evidence:
    """A fact read over QMP (a QOM property) or from the topology: basis ``host``."""
    return Evidence(name, value, "host", reason, device)


def merged(*groups: Iterable[Evidence]) -> tuple[Evidence, ...]:
    """The evidence of several decisions, each fact once, in first-seen order."""
    return tuple(dict.fromkeys(e for group in groups for e in group))


def summary(evidence: Iterable[Evidence]) -> tuple[Basis, str]:
    """The basis of a decision (its weakest evidence) and why: the weakest facts with
    their reasons, each named with its device when several devices' facts count.
    Nothing consulted at all: ``host``, from QOM properties only."""
    items = merged(evidence)
    basis = weakest([e.basis for e in items])
    if not items:
        return basis, "read: QOM properties only"
    several = len({e.device for e in items}) > 1  # then name whose fact each one is
    parts = [f"{e.fact}{f' of {e.device}' if several and e.device else ''}={word(e.value)}: "
             f"{e.reason}" for e in items if e.basis == basis]
    return basis, "; ".join(dict.fromkeys(parts))


def unknown(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    """The facts nobody could know (basis ``assumed``)."""
    return tuple(e for e in merged(evidence) if not e.known)


def word(value: bool | str) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else value
