"""The migration tracker (decisions/migration/tracker.py): its tables and real QEMU 10 sequences.

Source, destination and the recorded sequences end to end; statuses, passes, the peak
dirty rate, the role and the id a migration keeps. Idle and racing polls:
test_migration_tracker_polls.py; ids and invariants: test_migration_tracker_invariants.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from qmpdirty.decisions.migration.tracker import (
    NEAR_END,
    PHASE_OF,
    TRANSITIONS,
    MigrationEnded,
    Observation,
    PassCompleted,
    PassSeen,
    Phase,
    SessionLost,
    StatusSeen,
    TrackerState,
    is_active,
    migration_id,
    observe,
    passes_done,
)
from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.qmp.translate import event_from, migration_snapshot_from
from tests.support.recorded_replies import RECORDED, load
from tests.support.tracker_runs import T0, ev, poll, run


def snap(rate_pages: int | None = None, page_size: int | None = 4096, **fields: Any
         ) -> MigrationSnapshot:
    return MigrationSnapshot(status=fields.pop("status", "active"), dirty_pages_rate=rate_pages,
                             page_size=page_size, **fields)


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
