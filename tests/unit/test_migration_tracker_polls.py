"""The migration tracker (decisions/migration/tracker.py) and query-migrate polls: a migration seen
only while idle, polls racing ahead of events (events on), and the poll interval.
"""

from __future__ import annotations

from typing import Any

import pytest

from qmpdirty.decisions.migration.tracker import (
    NEAR_END,
    MigrationChanged,
    MigrationEnded,
    PassCompleted,
    PassSeen,
    ProgressSeen,
    StatusSeen,
    TrackerState,
    from_poll,
    is_active,
    migration_id,
    observe,
    poll_interval_s,
)
from qmpdirty.facts.vm import MigrationSnapshot
from tests.support.tracker_runs import T0, ev, poll, run

# --- a migration seen while idle, or after its end -----------------------------------


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
