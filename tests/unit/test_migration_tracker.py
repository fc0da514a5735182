"""The migration tracker (decisions/migration.py): real QEMU 10 sequences, edges, invariants."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.decisions.migration.tracker import (
    NEAR_END,
    PHASE_OF,
    TRANSITIONS,
    Effect,
    Migration,
    MigrationChanged,
    MigrationEnded,
    Observation,
    PassCompleted,
    PassSeen,
    Phase,
    ProgressSeen,
    Role,
    SessionLost,
    StatusSeen,
    TrackerState,
    from_poll,
    is_active,
    migration_id,
    observe,
    passes_done,
    poll_interval_s,
)
from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.qmp.translate import event_from, migration_snapshot_from

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2"
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


def snap(rate_pages: int | None = None, page_size: int | None = 4096, **fields: Any
         ) -> MigrationSnapshot:
    return MigrationSnapshot(status=fields.pop("status", "active"), dirty_pages_rate=rate_pages,
                             page_size=page_size, **fields)


def load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def recorded_observations() -> list[list[Observation]]:
    """The recorded MIGRATION/MIGRATION_PASS events, split into one list per migration."""
    migrations: list[list[Observation]] = []
    for path in sorted(RECORDED.glob("event.*.json")):
        event = event_from(json.loads(path.read_text()))
        if event.name == "MIGRATION":
            if event.data["status"] == "setup":
                migrations.append([])
            migrations[-1].append(ev(event.data["status"]))
        elif event.name == "MIGRATION_PASS":
            migrations[-1].append(PassSeen(event.data["pass"]))
    return migrations


# --- the tables themselves ------------------------------------------------------


def test_transition_table_covers_every_phase_pair_but_terminal_before() -> None:
    expected = {(b, a) for b in (Phase.IDLE, Phase.RUNNING) for a in Phase}
    assert set(TRANSITIONS) == expected


@pytest.mark.parametrize(
    ("status", "phase"),
    [(None, Phase.IDLE), ("none", Phase.IDLE), ("setup", Phase.RUNNING),
     ("active", Phase.RUNNING), ("device", Phase.RUNNING), ("cancelling", Phase.RUNNING),
     ("postcopy-active", Phase.RUNNING), ("pre-switchover", Phase.RUNNING),
     ("completed", Phase.TERMINAL), ("failed", Phase.TERMINAL), ("cancelled", Phase.TERMINAL)],
)
def test_phase_of_status(status: str | None, phase: Phase) -> None:
    assert PHASE_OF[status] is phase


def test_near_end_statuses_are_all_running() -> None:
    assert all(PHASE_OF[s] is Phase.RUNNING for s in NEAR_END)


# --- real sequences ---------------------------------------------------------------


def test_source_sequence_of_a_short_migration() -> None:
    """runtime-notes: setup, PASS 1, active, PASS n..., STOP, device, PASS n+1, completed."""
    seq: list[Observation] = [
        ev("setup"), PassSeen(1), ev("active"), PassSeen(2), PassSeen(3),
        ev("device"), PassSeen(4), ev("completed"),
    ]
    r = run(seq)
    assert r.kinds() == [
        ["MigrationChanged"], ["PassCompleted"], ["MigrationChanged"], ["PassCompleted"],
        ["PassCompleted"], ["MigrationChanged"], ["PassCompleted"],
        ["MigrationChanged", "MigrationEnded"],
    ]
    end = r.ended()
    assert end.outcome == "completed"
    assert end.ended_ts == T0 + 7
    assert end.migration.statuses == ("setup", "active", "device", "completed")
    assert end.migration.status == "completed"
    assert end.migration.passes == 4
    # the pass of the stop-copy sync (after device) starts no pre-copy pass
    assert (end.migration.precopy_passes, passes_done(end.migration)) == (3, 2)
    assert end.migration.role == "source"
    assert end.migration.started_ts == T0
    assert end.migration.id == migration_id(T0)
    assert [e.pass_no for e in r.flat if isinstance(e, PassCompleted)] == [1, 2, 3, 4]
    assert r.final.current is None and r.final.ended is not None
    assert not is_active(r.final)
    # while running the tracker is active and every record carries the same id
    assert all(is_active(s) for s in r.states[1:-1])
    assert {e.migration.id for e in r.flat} == {migration_id(T0)}


def test_destination_sequence() -> None:
    """runtime-notes: destination sees setup, active, (RESUME), completed; no passes."""
    r = run([ev("setup"), ev("active"), ev("completed")], role="destination")
    end = r.ended()
    assert end.outcome == "completed"
    assert end.migration.role == "destination"
    assert end.migration.statuses == ("setup", "active", "completed")
    assert end.migration.passes == 0
    assert all(e.migration.role == "destination" for e in r.flat)


@pytest.mark.parametrize("which", [0, 1, 2], ids=["failed", "cancelled", "completed"])
def test_recorded_qemu_10_event_sequences(which: int) -> None:
    """The MIGRATION/MIGRATION_PASS events QEMU 10.0.2 really sent (tests/data)."""
    migrations = recorded_observations()
    assert len(migrations) == 3
    seq = migrations[which]
    r = run(seq)
    end = r.ended()
    last = seq[-1]
    assert isinstance(last, StatusSeen)
    assert end.outcome == last.status
    assert end.migration.statuses[0] == "setup"
    assert end.migration.statuses[-1] == last.status
    passes = [s.pass_no for s in seq if isinstance(s, PassSeen)]
    assert end.migration.passes == max(passes)
    assert r.final.current is None and r.final.ended is not None
    if which == 1:
        assert end.migration.statuses == ("setup", "active", "cancelling", "cancelled")
    if which == 2:
        assert end.migration.statuses == ("setup", "active", "device", "completed")
        assert passes == list(range(1, len(passes) + 1)) and len(passes) >= 3


def test_cancel_goes_through_cancelling() -> None:
    r = run([ev("setup"), PassSeen(1), ev("active"), ev("cancelling"), ev("cancelled")])
    end = r.ended()
    assert end.outcome == "cancelled"
    assert end.migration.statuses == ("setup", "active", "cancelling", "cancelled")
    assert end.ended_ts == T0 + 4


def test_failed_carries_qemu_error_desc() -> None:
    failed = migration_snapshot_from(load("query-migrate.failed.json"))
    r = run([ev("setup"), ev("active"), ev("failed", failed)])
    end = r.ended()
    assert end.outcome == "failed"
    assert end.migration.snapshot is not None
    assert end.migration.snapshot.error_desc == "ram_save_setup failed: Input/output error"
    assert end.migration.statuses == ("setup", "active", "failed")


def test_session_lost_mid_migration_is_lost() -> None:
    r = run([ev("setup"), PassSeen(1), ev("active"), SessionLost()])
    before = r.states[-2].current
    assert before is not None
    assert r.effects[-1] == (MigrationEnded(before, "lost", T0 + 3),)
    assert r.ended().migration.statuses == ("setup", "active")
    assert r.final.current is None and r.final.ended is not None


def test_session_lost_while_idle_publishes_nothing() -> None:
    assert observe(TrackerState(), SessionLost(), T0) == (TrackerState(), ())


@pytest.mark.parametrize("gone", [None, "none"])
def test_poll_showing_no_migration_after_one_ran_is_lost(gone: str | None) -> None:
    """QEMU restarted under the same socket: query-migrate has no status any more."""
    r = run([ev("setup"), ev("active"), poll(gone)])
    end = r.ended()
    assert end.outcome == "lost"
    assert end.ended_ts == T0 + 2
    assert r.kinds()[-1] == ["MigrationEnded"]
    assert r.final.current is None and r.final.ended is not None


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_poll_showing_a_past_migration_while_idle_is_history(status: str) -> None:
    state, effects = observe(TrackerState(), poll(status), T0)
    # nothing begins or is published; the poll is remembered (events-off detection)
    assert effects == () and state.current is None and state.ended is None
    assert state.idle_poll is not None and state.idle_poll.status == status


@pytest.mark.parametrize("status", [None, "none"])
def test_idle_poll_while_idle_does_nothing(status: str | None) -> None:
    state, effects = observe(TrackerState(), poll(status), T0)
    # nothing begins or is published; the poll is remembered (events-off detection)
    assert effects == () and state.current is None and state.ended is None
    assert state.idle_poll is not None and state.idle_poll.status == status


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_terminal_event_while_idle_begins_and_ends(status: str) -> None:
    """Events turned on late: the end is news even though the start was missed."""
    state, effects = observe(TrackerState(), ev(status), T0, "destination")
    assert state.current is None and state.ended is not None
    assert [type(e) for e in effects] == [MigrationChanged, MigrationEnded]
    changed, ended = effects
    assert isinstance(changed, MigrationChanged) and isinstance(ended, MigrationEnded)
    assert ended.outcome == status
    assert ended.migration.statuses == (status,)
    assert ended.migration.role == "destination"
    assert ended.migration.id == changed.migration.id == migration_id(T0)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_terminal_event_after_a_poll_already_ended_the_migration(status: str) -> None:
    """The shell polls query-migrate in one task and reads events in another (with its own
    query-migrate before observing), so the poll can report the end first and the MIGRATION
    event for the same end arrive right after. That is one migration, not two: no second,
    empty summary may replace the real one on the retained migration/summary topic.
    """
    r = run([ev("setup"), PassSeen(1), ev("active"), poll(status), ev(status)], step_s=0.05)
    ends = [e for e in r.flat if isinstance(e, MigrationEnded)]
    assert len(ends) == 1, [(e.migration.id, e.migration.statuses, e.migration.passes)
                            for e in ends]
    assert ends[0].migration.passes == 1
    assert r.final.current is None and r.final.ended is not None


def test_poll_while_idle_showing_running_adopts_the_migration() -> None:
    state, effects = observe(TrackerState(), poll("active", transferred_bytes=5), T0)
    assert is_active(state)
    assert state.current is not None
    assert state.current.statuses == ("active",)
    assert state.current.snapshot is not None
    assert state.current.snapshot.transferred_bytes == 5
    assert effects == (MigrationChanged(state.current),)


@pytest.mark.parametrize(
    ("snapshot", "status"),
    [(None, "active"), (MigrationSnapshot(status="device"), "device")],
)
def test_pass_while_idle_adopts_a_migration(snapshot: MigrationSnapshot | None, status: str
                                            ) -> None:
    state, effects = observe(TrackerState(), PassSeen(7, snapshot), T0, "source")
    assert is_active(state)
    assert state.current is not None
    assert state.current.passes == 7
    assert state.current.statuses == (status,)
    assert [type(e) for e in effects] == [MigrationChanged, PassCompleted]
    passed = effects[1]
    assert isinstance(passed, PassCompleted)
    assert passed.pass_no == 7
    assert passed.migration == state.current


def test_duplicate_statuses_are_not_repeated() -> None:
    r = run([ev("setup"), poll("setup"), ev("active"), poll("active"), poll("active"),
             ev("device"), poll("device"), poll("completed")])
    assert r.ended().migration.statuses == ("setup", "active", "device", "completed")


def test_statuses_keep_order_when_a_status_comes_back() -> None:
    """postcopy can pause and recover: a status seen again later is recorded again."""
    r = run([ev("setup"), ev("postcopy-active"), ev("postcopy-paused"), ev("postcopy-recover"),
             ev("postcopy-active"), ev("completed")])
    assert r.ended().migration.statuses == (
        "setup", "postcopy-active", "postcopy-paused", "postcopy-recover", "postcopy-active",
        "completed",
    )


def test_unknown_future_status_counts_as_running() -> None:
    r = run([ev("setup"), ev("some-status-of-qemu-12"), ev("completed")])
    assert r.kinds() == [["MigrationChanged"], ["MigrationChanged"],
                         ["MigrationChanged", "MigrationEnded"]]


def test_pass_numbers_never_go_backwards() -> None:
    r = run([ev("setup"), PassSeen(3), PassSeen(2)])
    assert r.final.current is not None
    assert r.final.current.passes == 3
    assert [e.pass_no for e in r.flat if isinstance(e, PassCompleted)] == [3, 2]


def test_peak_dirty_rate_is_the_maximum_seen() -> None:
    r = run([
        ev("setup", snap(None)), PassSeen(1, snap(0)), PassSeen(2, snap(1000)),
        poll("active", dirty_pages_rate=3000, page_size=4096), PassSeen(3, snap(2000)),
        # QEMU reports 0 again once completed: the peak stays
        ev("completed", snap(0, status="completed")),
    ])
    end = r.ended()
    assert end.migration.peak_dirty_bytes_per_s == 3000 * 4096.0
    peaks = [s.current.peak_dirty_bytes_per_s for s in r.states[1:-1] if s.current]
    assert peaks == [None, None, 1000 * 4096.0, 3000 * 4096.0, 3000 * 4096.0]
    assert end.migration.snapshot is not None
    assert end.migration.snapshot.status == "completed"


def test_peak_dirty_rate_from_recorded_snapshots() -> None:
    names = [f"query-migrate.active-{i}.json" for i in range(5)]
    snaps = [migration_snapshot_from(load(n)) for n in names]
    rates = [s.dirty_bytes_per_s for s in snaps if s.dirty_bytes_per_s is not None]
    assert rates, "the recording should hold a snapshot after the first pass"
    r = run([ev("setup"), *[StatusSeen("active", s, from_event=False) for s in snaps]])
    assert r.final.current is not None
    assert r.final.current.peak_dirty_bytes_per_s == max(rates)


def test_role_is_fixed_when_the_migration_begins() -> None:
    state, _ = observe(TrackerState(), ev("setup"), T0, "destination")
    state, _ = observe(state, ev("active"), T0 + 1, "source")
    state, effects = observe(state, ev("completed"), T0 + 2, "source")
    ended = effects[-1]
    assert isinstance(ended, MigrationEnded)
    assert ended.migration.role == "destination"


def test_a_second_migration_gets_a_new_id() -> None:
    r = run([ev("setup"), ev("completed"), ev("setup"), ev("failed")], step_s=0.25)
    ends = [e for e in r.flat if isinstance(e, MigrationEnded)]
    assert [e.migration.id for e in ends] == [migration_id(T0), migration_id(T0 + 0.5)]
    assert ends[0].migration.id != ends[1].migration.id
    assert [e.outcome for e in ends] == ["completed", "failed"]
    assert ends[1].migration.statuses == ("setup", "failed")


# --- ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [(0.0, "19700101T000000.000Z"), (1_700_000_000.123, "20231114T221320.123Z"),
     (1_795_271_512.721852, "20261121T143152.721Z"), (951_782_400.999, "20000229T000000.999Z")],
)
def test_migration_id_is_readable_utc(ts: float, expected: str) -> None:
    assert migration_id(ts) == expected


@settings(max_examples=200, deadline=None)
@given(a=st.integers(0, 4_000_000_000_000), b=st.integers(0, 4_000_000_000_000))
def test_migration_ids_are_distinct_per_millisecond_and_sort_like_time(a: int, b: int) -> None:
    ida, idb = migration_id(a / 1000), migration_id(b / 1000)
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z", ida)
    assert ida.endswith(f".{a % 1000:03d}Z")
    assert (ida == idb) == (a == b)
    assert (ida < idb) == (a < b)


# --- poll interval -----------------------------------------------------------------------


def _running(status: str, **fields: Any) -> TrackerState:
    state, _ = observe(TrackerState(), poll(status, **fields), T0)
    return state


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (TrackerState(), None),
        (_running("active"), 1.0),
        (_running("setup"), 1.0),
        *[(_running(s), 0.25) for s in sorted(NEAR_END)],
        # 100 MB left at 10 MB/s: 10 s, far from the end
        (_running("active", remaining_bytes=100_000_000, bandwidth_bytes_per_s=1e7), 1.0),
        # 15 MB left at 10 MB/s: 1.5 s < 2 normal intervals
        (_running("active", remaining_bytes=15_000_000, bandwidth_bytes_per_s=1e7), 0.25),
        # exactly two intervals left is not "within"
        (_running("active", remaining_bytes=20_000_000, bandwidth_bytes_per_s=1e7), 1.0),
        # no bandwidth known yet: normal
        (_running("active", remaining_bytes=1, bandwidth_bytes_per_s=0.0), 1.0),
        (_running("active", remaining_bytes=1, bandwidth_bytes_per_s=None), 1.0),
        (_running("active", remaining_bytes=0, bandwidth_bytes_per_s=1.0), 0.25),
    ],
)
def test_poll_interval(state: TrackerState, expected: float | None) -> None:
    assert poll_interval_s(state, 1.0, 0.25) == expected


# --- invariants over any sequence ------------------------------------------------------

_STATUSES = [s for s in PHASE_OF if s is not None] + [None, "brand-new-status"]

_snapshots = st.none() | st.builds(
    MigrationSnapshot,
    status=st.sampled_from(_STATUSES),
    dirty_pages_rate=st.none() | st.integers(0, 10**7),
    page_size=st.sampled_from([None, 4096, 65536]),
    remaining_bytes=st.none() | st.integers(0, 2**40),
    bandwidth_bytes_per_s=st.none() | st.floats(0, 1e10),
)

_observations: st.SearchStrategy[Observation] = st.one_of(
    st.builds(StatusSeen, status=st.sampled_from(_STATUSES), snapshot=_snapshots,
              from_event=st.booleans()),
    st.builds(PassSeen, pass_no=st.integers(0, 50), snapshot=_snapshots),
    st.builds(ProgressSeen, snapshot=_snapshots.filter(lambda s: s is not None)),
    st.just(SessionLost()),
)


def _migrations_in(state: TrackerState, effects: tuple[Effect, ...]) -> list[Migration]:
    found = [e.migration for e in effects]
    return found + ([state.current] if state.current else [])


@settings(max_examples=300, deadline=None)
@given(
    observations=st.lists(_observations, max_size=40),
    gaps=st.lists(st.floats(0.002, 100.0), min_size=40, max_size=40),
    roles=st.lists(st.sampled_from(["source", "destination"]), min_size=40, max_size=40),
)
def test_tracker_invariants(
    observations: list[Observation], gaps: list[float], roles: list[Role]
) -> None:
    state = TrackerState()
    now = T0
    begun: dict[str, Role] = {}
    ended: set[str] = set()
    for seen, gap, role in zip(observations, gaps, roles, strict=False):
        now += gap
        state, effects = observe(state, seen, now, role)
        for m in _migrations_in(state, effects):
            assert all(a != b for a, b in zip(m.statuses, m.statuses[1:], strict=False)), m
            assert m.statuses and m.status == m.statuses[-1]
            assert m.passes >= 0
        for e in effects:
            mid = e.migration.id
            assert mid not in ended, "a migration was reported again after it ended"
            if isinstance(e, MigrationChanged | PassCompleted):
                begun.setdefault(mid, e.migration.role)
            if isinstance(e, MigrationEnded):
                assert mid in begun, "MigrationEnded without a begin for the same id"
                assert e.outcome in ("completed", "failed", "cancelled", "lost")
                assert e.ended_ts == now
                ended.add(mid)
            assert e.migration.role == begun[mid], "role changed during a migration"
        if any(isinstance(e, MigrationEnded) for e in effects):
            assert not is_active(state)
            assert state.current is None and state.ended is not None
        assert is_active(state) == (state.current is not None)
        interval = poll_interval_s(state, 1.0, 0.25)
        assert interval in ((1.0, 0.25) if is_active(state) else (None,))


# --- polls racing ahead of events (events on) ---------------------------------


def progress(status: str | None, **fields: Any) -> ProgressSeen:
    return ProgressSeen(MigrationSnapshot(status=status, **fields))


def test_poll_ahead_of_events_neither_reorders_nor_starts_a_phantom() -> None:
    """The poller sees `completed` before the event reader has read device/completed."""
    r = run([ev("setup"), ev("active"), progress("completed", transferred_bytes=9),
             ev("device"), ev("completed")])
    ends = [e for e in r.flat if isinstance(e, MigrationEnded)]
    assert len(ends) == 1
    assert ends[0].migration.statuses == ("setup", "active", "device", "completed")
    assert ends[0].outcome == "completed"
    assert ends[0].migration.snapshot is not None
    assert ends[0].migration.snapshot.transferred_bytes == 9  # the poll's figures were kept
    assert r.final.current is None


def test_terminal_status_on_three_polls_ends_without_its_event() -> None:
    r = run([ev("setup"), progress("failed"), progress("failed")])
    assert not [e for e in r.flat if isinstance(e, MigrationEnded)]
    assert is_active(r.final)
    r = run([ev("setup"), progress("failed"), progress("failed"),
             progress("failed", error_desc="boom")])
    end = r.ended()
    assert end.outcome == "failed" and end.migration.snapshot is not None
    assert end.migration.snapshot.error_desc == "boom"
    assert end.migration.statuses == ("setup", "failed")


def test_a_running_poll_resets_the_terminal_count() -> None:
    r = run([ev("setup"), progress("completed"), progress("completed"), progress("active"),
             progress("completed")])
    assert not [e for e in r.flat if isinstance(e, MigrationEnded)]


def test_progress_while_idle_is_ignored() -> None:
    assert observe(TrackerState(), progress("active"), T0) == (TrackerState(), ())


@pytest.mark.parametrize(("events_on", "active", "expected"), [
    (True, True, ProgressSeen),
    (True, False, StatusSeen),   # session start: a running migration is adopted by a poll
    (False, True, StatusSeen),   # no events: polls drive the status
    (False, False, StatusSeen),
])
def test_from_poll(events_on: bool, active: bool, expected: type) -> None:
    state = run([ev("setup")]).final if active else TrackerState()
    seen = from_poll(state, MigrationSnapshot(status="active"), events_on)
    assert type(seen) is expected
    if isinstance(seen, StatusSeen):
        assert not seen.from_event


def test_events_off_a_migration_between_two_idle_polls_is_reported() -> None:
    """Without MIGRATION events a short migration can begin and end between polls: a
    terminal result that differs from the previous idle poll is news; the first poll's
    (the last migration before the daemon came) and an unchanged one are history."""
    first = poll("completed", total_time_ms=100, transferred_bytes=1)
    state, effects = observe(TrackerState(), first, T0)
    assert effects == ()
    state, effects = observe(state, poll("completed", total_time_ms=100, transferred_bytes=1), T0)
    assert effects == ()
    state, effects = observe(state, poll("completed", total_time_ms=250, transferred_bytes=9), T0)
    assert [type(e) for e in effects] == [MigrationChanged, MigrationEnded]
    state, effects = observe(state, poll("completed", total_time_ms=250, transferred_bytes=9), T0)
    assert effects == ()  # the same result again
