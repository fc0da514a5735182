"""Feeding observations to a fresh migration tracker and keeping every step, for the
tracker tests (the recorded sequences and the polls, ids and invariants)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qmpdirty.decisions.migration.tracker import (
    Effect,
    MigrationEnded,
    Observation,
    Role,
    StatusSeen,
    TrackerState,
    observe,
)
from qmpdirty.facts.vm import MigrationSnapshot

T0 = 1_795_271_512.0


@dataclass(frozen=True)
class Run:
    """Every step of feeding observations to a fresh tracker."""

    states: list[TrackerState]
    effects: list[tuple[Effect, ...]]

    @property
    def final(self) -> TrackerState:
        return self.states[-1]

    @property
    def flat(self) -> list[Effect]:
        return [e for step in self.effects for e in step]

    def kinds(self) -> list[list[str]]:
        return [[type(e).__name__ for e in step] for step in self.effects]

    def ended(self) -> MigrationEnded:
        ends = [e for e in self.flat if isinstance(e, MigrationEnded)]
        assert len(ends) == 1, ends
        return ends[0]


def run(
    observations: Sequence[Observation], *, role: Role = "source", t0: float = T0,
    step_s: float = 1.0, state: TrackerState | None = None,
) -> Run:
    states = [state or TrackerState()]
    effects: list[tuple[Effect, ...]] = []
    for i, seen in enumerate(observations):
        new, out = observe(states[-1], seen, t0 + i * step_s, role)
        states.append(new)
        effects.append(out)
    return Run(states, effects)


def ev(status: str | None, snap: MigrationSnapshot | None = None) -> StatusSeen:
    return StatusSeen(status, snap, from_event=True)


def poll(status: str | None, **fields: Any) -> StatusSeen:
    return StatusSeen(status, MigrationSnapshot(status=status, **fields), from_event=False)
