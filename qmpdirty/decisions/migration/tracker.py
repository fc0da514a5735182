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

from qmpdirty.errors import InternalError
from qmpdirty.facts.events import DeviceStateSeen
from qmpdirty.facts.vm import MigrationSnapshot

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

#: Statuses in which a MIGRATION_PASS starts a pre-copy pass (the guest still runs).
PRECOPY = frozenset({"setup", "active"})
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
    passes: int = 0  # QEMU's pass counter (MIGRATION_PASS: its dirty-bitmap syncs)
    precopy_passes: int = 0  # the last of them seen before the switchover
    snapshot: MigrationSnapshot | None = None
    peak_dirty_bytes_per_s: float | None = None
    terminal_polls: int = 0
    vfio_states: tuple[tuple[str, str], ...] = ()  # (qom path, VFIO_MIGRATION device-state)


@dataclass(frozen=True, slots=True)
class TrackerState:
    """The migration in progress, if any, and the one that ended last.

    ``ended`` exists for one race: the poller's ``query-migrate`` can report the end
    before the MIGRATION event for the same end is read; that event must not
    start and end a second, phantom migration.
    """

    current: Migration | None = None
    ended: Migration | None = None
    #: the last poll seen while idle: with events off, a terminal status that differs
    #: from it is a migration that began and ended between two polls
    idle_poll: MigrationSnapshot | None = None


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
class ProgressSeen:
    """A ``query-migrate`` poll while MIGRATION events drive the status: figures only.

    The poller and the event reader run concurrently, so a poll can be ahead of
    events not yet read; letting it move the status would reorder statuses or, after
    an early ``completed``, start a phantom migration from the late events. A
    terminal status seen on ``TERMINAL_POLLS`` polls with no event still ends the
    migration (the event may have been dropped by a full queue).
    """

    snapshot: MigrationSnapshot


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The QMP session ended: a running migration's fate is unknown (``lost``)."""


Observation = StatusSeen | PassSeen | ProgressSeen | DeviceStateSeen | SessionLost

#: Polls in a row that must show the end before it is taken without its event.
TERMINAL_POLLS = 3


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

_Handler = Callable[[TrackerState, StatusSeen, float, Role], Step]


def _running(state: TrackerState) -> Migration:
    """The migration a RUNNING-phase handler works on (``observe`` sees that it is there)."""
    if state.current is None:
        raise InternalError("a running-phase transition with no migration tracked")
    return state.current


def _ignore(state: TrackerState, seen: StatusSeen, now: float, role: Role) -> Step:
    if not seen.from_event and seen.snapshot is not None:
        return replace(state, idle_poll=seen.snapshot), ()
    return state, ()


def _begin(state: TrackerState, seen: StatusSeen, now: float, role: Role) -> Step:
    started = _start(seen.status or "active", seen.snapshot, now, role)
    return TrackerState(started, state.ended), (MigrationChanged(started),)


def _update(state: TrackerState, seen: StatusSeen, now: float, role: Role) -> Step:
    updated = _absorb(_running(state), seen.status, seen.snapshot)
    return TrackerState(updated, state.ended), (MigrationChanged(updated),)


def _finish(state: TrackerState, seen: StatusSeen, now: float, role: Role) -> Step:
    done = _absorb(_running(state), seen.status, seen.snapshot)
    ended = MigrationEnded(done, _outcome(seen.status), now)
    return TrackerState(None, done, done.snapshot), (MigrationChanged(done), ended)


def _flash(state: TrackerState, seen: StatusSeen, now: float, role: Role) -> Step:
    """A terminal event with nothing tracked (events turned on late): begin and end.

    Not news: a poll showing a past migration, or the event for an end that a poll
    already reported (the migration that ended last has this status).
    """
    last = state.ended
    if not seen.from_event:
        before, state = state.idle_poll, replace(state, idle_poll=seen.snapshot)
        if before is None or _same_result(before, seen.snapshot):
            return state, ()  # history: what the first poll found, or unchanged since
    elif last is not None and last.status == seen.status:
        return state, ()
    flash = TrackerState(_start(seen.status or "none", None, now, role), last)
    return _finish(flash, seen, now, role)


def _same_result(a: MigrationSnapshot, b: MigrationSnapshot | None) -> bool:
    """Two idle polls show the same finished migration (QEMU keeps the last one)."""
    return b is not None and (a.status, a.total_time_ms, a.transferred_bytes) == (
        b.status, b.total_time_ms, b.transferred_bytes)


def _vanished(state: TrackerState, seen: StatusSeen, now: float, role: Role) -> Step:
    """QEMU reports no migration although one was running: it restarted. ``lost``."""
    current = _running(state)
    return TrackerState(None, current), (MigrationEnded(current, "lost", now),)


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
        return TrackerState(None, current), (MigrationEnded(current, "lost", now),)
    if isinstance(seen, PassSeen):
        return _on_pass(state, seen, now, role)
    if isinstance(seen, ProgressSeen):
        return _on_progress(state, seen.snapshot, now, role)
    if isinstance(seen, DeviceStateSeen):
        if current is None:  # device states outside a migration are not a migration's
            return state, ()
        states = (*[(d, s) for d, s in current.vfio_states if d != seen.device],
                  (seen.device, seen.state))
        changed = replace(current, vfio_states=tuple(states))
        return TrackerState(changed, state.ended), (MigrationChanged(changed),)
    before = Phase.IDLE if current is None else Phase.RUNNING
    after = PHASE_OF.get(seen.status, Phase.RUNNING)
    return TRANSITIONS[(before, after)](state, seen, now, role)


def _on_pass(state: TrackerState, seen: PassSeen, now: float, role: Role) -> Step:
    """A pass ended: count it and emit its record (adopting a migration seen mid-way)."""
    status = seen.snapshot.status if seen.snapshot else None
    effects: tuple[Effect, ...] = ()
    current = state.current
    if current is None:
        current = _start(status or "active", None, now, role)
        effects = (MigrationChanged(current),)
    absorbed = _absorb(current, None, seen.snapshot)
    precopy = max(current.precopy_passes, seen.pass_no) if current.status in PRECOPY \
        else current.precopy_passes
    counted = replace(absorbed, passes=max(current.passes, seen.pass_no), precopy_passes=precopy)
    return TrackerState(counted, state.ended), (*effects, PassCompleted(counted, seen.pass_no))


def _on_progress(state: TrackerState, snap: MigrationSnapshot, now: float, role: Role) -> Step:
    """Figures from a poll; a persistent terminal status ends the migration."""
    current = state.current
    if current is None:  # idle: only an event (or an event-less poll) begins one
        return state, ()
    terminal = PHASE_OF.get(snap.status, Phase.RUNNING) is Phase.TERMINAL
    m = replace(_absorb(current, None, snap),
                terminal_polls=current.terminal_polls + 1 if terminal else 0)
    if m.terminal_polls >= TERMINAL_POLLS:
        return _finish(TrackerState(m, state.ended), StatusSeen(snap.status, snap), now, role)
    return TrackerState(m, state.ended), (MigrationChanged(m),)


def from_poll(state: TrackerState, snap: MigrationSnapshot, events_on: bool) -> Observation:
    """What a poll means: with events on and a migration running, figures only."""
    if events_on and state.current is not None:
        return ProgressSeen(snap)
    return StatusSeen(snap.status, snap, from_event=False)


def snapshot_of(seen: Observation) -> MigrationSnapshot | None:
    """The ``query-migrate`` figures an observation came with, if any."""
    match seen:
        case StatusSeen(snapshot=snap) | PassSeen(snapshot=snap):
            return snap
        case ProgressSeen(snapshot=snap):
            return snap
    return None


def is_terminal(status: str | None) -> bool:
    """True for a status that ends a migration (``completed``, ``failed``, ``cancelled``)."""
    return PHASE_OF.get(status) is Phase.TERMINAL


def rereads_params(status: str | None) -> bool:
    """``setup``: the migration has just been started, perhaps right after its
    parameters were set; its forecast must rest on them, so they are read again."""
    return status == "setup"


def passes_done(m: Migration) -> int:
    """Pre-copy passes finished. QEMU numbers the pass under way (``MIGRATION_PASS``
    ``pass`` is its dirty-bitmap sync count; sync 1, at setup, starts the bulk pass):
    all but the last seen before the switchover. The sync of the stop-copy phase
    (``ram_save_complete``, after ``device``) starts no pass and is not counted."""
    return max(m.precopy_passes - 1, 0)


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
