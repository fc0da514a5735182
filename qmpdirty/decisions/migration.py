"""The migration tracker: a pure, table-driven state machine (pure core).

Stage: decisions. Fed by what the shell observes on one VM's QMP session —
``MIGRATION`` and ``MIGRATION_PASS`` events, ``query-migrate`` polls, the session
being lost — and returns the new state plus the records to publish. No I/O, no
clock: ``now`` is an argument. Like h11, outcomes are values.

QEMU's MigrationStatus values (qapi/migration.json, 10.2) fall into three phases;
``PHASE_OF`` is the table. ``TRANSITIONS`` says what each (phase before, phase
observed) pair does. A migration begins on the first running status, ends on
``completed``/``failed``/``cancelled``, or is ``lost`` when the session drops (QEMU
killed) or QEMU reports no migration after one was running (QEMU restarted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Literal

from qmpdirty.facts.model import MigrationSnapshot

Role = Literal["source", "destination"]
Outcome = Literal["completed", "failed", "cancelled", "lost"]


class Phase(Enum):
    IDLE = "idle"
    RUNNING = "running"
    TERMINAL = "terminal"


#: MigrationStatus -> phase. Statuses QEMU adds later default to RUNNING.
PHASE_OF: dict[str | None, Phase] = {
    None: Phase.IDLE,
    "none": Phase.IDLE,
    "setup": Phase.RUNNING,
    "active": Phase.RUNNING,
    "cancelling": Phase.RUNNING,
    "device": Phase.RUNNING,
    "pre-switchover": Phase.RUNNING,
    "wait-unplug": Phase.RUNNING,
    "colo": Phase.RUNNING,
    "postcopy-active": Phase.RUNNING,
    "postcopy-device": Phase.RUNNING,  # 10.2
    "postcopy-paused": Phase.RUNNING,
    "postcopy-recover-setup": Phase.RUNNING,  # 9.1
    "postcopy-recover": Phase.RUNNING,
    "completed": Phase.TERMINAL,
    "failed": Phase.TERMINAL,
    "cancelled": Phase.TERMINAL,
}

#: Statuses near the end of a migration: poll faster to catch the switchover.
NEAR_END = frozenset({"device", "pre-switchover", "cancelling", "wait-unplug", "postcopy-device"})


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration as tracked so far."""

    id: str
    role: Role
    started_ts: float
    status: str
    statuses: tuple[str, ...]
    passes: int = 0
    snapshot: MigrationSnapshot | None = None
    peak_dirty_bytes_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class TrackerState:
    """The tracker's whole state: the migration in progress, if any."""

    current: Migration | None = None


# --- what the shell observed -------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusSeen:
    """A ``MIGRATION`` event (``from_event``) or a ``query-migrate`` poll."""

    status: str | None
    snapshot: MigrationSnapshot | None = None
    from_event: bool = True


@dataclass(frozen=True, slots=True)
class PassSeen:
    """A ``MIGRATION_PASS`` event, with the poll taken right after it if any."""

    pass_no: int
    snapshot: MigrationSnapshot | None = None


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The QMP session ended: a running migration's fate is unknown (``lost``)."""


Observation = StatusSeen | PassSeen | SessionLost


# --- what to publish ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationChanged:
    """Publish the retained ``migration`` record."""

    migration: Migration


@dataclass(frozen=True, slots=True)
class PassCompleted:
    """Publish one ``migration/pass`` record."""

    migration: Migration
    pass_no: int


@dataclass(frozen=True, slots=True)
class MigrationEnded:
    """Publish the retained ``migration/summary`` record."""

    migration: Migration
    outcome: Outcome
    ended_ts: float


Effect = MigrationChanged | PassCompleted | MigrationEnded
Step = tuple[TrackerState, tuple[Effect, ...]]


def migration_id(started_ts: float) -> str:
    """A readable, unique-per-VM id from the start time (UTC, milliseconds)."""
    stamp = datetime.fromtimestamp(started_ts, UTC).strftime("%Y%m%dT%H%M%S.%f")
    return stamp[:-3] + "Z"


def _start(status: str, snapshot: MigrationSnapshot | None, now: float, role: Role) -> Migration:
    return _absorb(
        Migration(id=migration_id(now), role=role, started_ts=now, status=status, statuses=()),
        status,
        snapshot,
    )


def _absorb(m: Migration, status: str | None, snapshot: MigrationSnapshot | None) -> Migration:
    """Fold a status and/or snapshot into the record; keep the first-seen status order."""
    if status is not None and (not m.statuses or m.statuses[-1] != status):
        m = replace(m, status=status, statuses=(*m.statuses, status))
    if snapshot is not None:
        rate = snapshot.dirty_bytes_per_s
        peak = m.peak_dirty_bytes_per_s
        if rate is not None and (peak is None or rate > peak):
            peak = rate
        m = replace(m, snapshot=snapshot, peak_dirty_bytes_per_s=peak)
    return m


def _outcome(status: str | None) -> Outcome:
    return "completed" if status == "completed" else "cancelled" if status == "cancelled" else (
        "failed" if status == "failed" else "lost"
    )


# --- the transition table ----------------------------------------------------

_Handler = Callable[[Migration | None, StatusSeen, float, Role], Step]


def _ignore(m: Migration | None, seen: StatusSeen, now: float, role: Role) -> Step:
    return TrackerState(m), ()


def _begin(m: Migration | None, seen: StatusSeen, now: float, role: Role) -> Step:
    started = _start(seen.status or "active", seen.snapshot, now, role)
    return TrackerState(started), (MigrationChanged(started),)


def _update(m: Migration | None, seen: StatusSeen, now: float, role: Role) -> Step:
    assert m is not None
    updated = _absorb(m, seen.status, seen.snapshot)
    return TrackerState(updated), (MigrationChanged(updated),)


def _finish(m: Migration | None, seen: StatusSeen, now: float, role: Role) -> Step:
    assert m is not None
    done = _absorb(m, seen.status, seen.snapshot)
    ended = MigrationEnded(done, _outcome(seen.status), now)
    return TrackerState(None), (MigrationChanged(done), ended)


def _flash(m: Migration | None, seen: StatusSeen, now: float, role: Role) -> Step:
    """A terminal event with nothing tracked (events turned on late): begin and end."""
    if not seen.from_event:  # a poll showing a past migration is history, not news
        return TrackerState(None), ()
    return _finish(_start(seen.status or "none", None, now, role), seen, now, role)


def _vanished(m: Migration | None, seen: StatusSeen, now: float, role: Role) -> Step:
    """QEMU reports no migration although one was running: it restarted. ``lost``."""
    assert m is not None
    return TrackerState(None), (MigrationEnded(m, "lost", now),)


TRANSITIONS: dict[tuple[Phase, Phase], _Handler] = {
    (Phase.IDLE, Phase.IDLE): _ignore,
    (Phase.IDLE, Phase.RUNNING): _begin,
    (Phase.IDLE, Phase.TERMINAL): _flash,
    (Phase.RUNNING, Phase.IDLE): _vanished,
    (Phase.RUNNING, Phase.RUNNING): _update,
    (Phase.RUNNING, Phase.TERMINAL): _finish,
}


def observe(state: TrackerState, seen: Observation, now: float, role: Role = "source") -> Step:
    """Advance the tracker by one observation; ``role`` is used when a migration begins."""
    current = state.current
    if isinstance(seen, SessionLost):
        if current is None:
            return state, ()
        return TrackerState(None), (MigrationEnded(current, "lost", now),)
    if isinstance(seen, PassSeen):
        return _on_pass(state, seen, now, role)
    before = Phase.IDLE if current is None else Phase.RUNNING
    after = PHASE_OF.get(seen.status, Phase.RUNNING)
    return TRANSITIONS[(before, after)](current, seen, now, role)


def _on_pass(state: TrackerState, seen: PassSeen, now: float, role: Role) -> Step:
    """A pass ended: count it and emit its record (adopting a migration seen mid-way)."""
    status = seen.snapshot.status if seen.snapshot else None
    effects: tuple[Effect, ...] = ()
    current = state.current
    if current is None:
        state, effects = _begin(None, StatusSeen(status or "active", None), now, role)
        current = state.current
        assert current is not None
    absorbed = _absorb(current, None, seen.snapshot)
    counted = replace(absorbed, passes=max(current.passes, seen.pass_no))
    return TrackerState(counted), (*effects, PassCompleted(counted, seen.pass_no))


def is_active(state: TrackerState) -> bool:
    """True while a migration is in progress (dirty-rate measurement must wait)."""
    return state.current is not None


def poll_interval_s(state: TrackerState, normal_s: float, fast_s: float) -> float | None:
    """How long until the next ``query-migrate``: None when idle, ``fast_s`` near the end.

    Near the end means a switchover status, or remaining bytes that the current
    bandwidth moves within two normal intervals.
    """
    m = state.current
    if m is None:
        return None
    if m.status in NEAR_END:
        return fast_s
    snap = m.snapshot
    if snap and snap.remaining_bytes is not None and snap.bandwidth_bytes_per_s and (
        snap.remaining_bytes / snap.bandwidth_bytes_per_s < 2 * normal_s
    ):
        return fast_s
    return normal_s
