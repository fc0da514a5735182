"""The migration tracker (decisions/migration/tracker.py): readable, ordered ids, and invariants
that hold over any sequence of observations.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.decisions.migration.tracker import (
    PHASE_OF,
    Effect,
    Migration,
    MigrationChanged,
    MigrationEnded,
    Observation,
    PassCompleted,
    PassSeen,
    ProgressSeen,
    Role,
    SessionLost,
    StatusSeen,
    TrackerState,
    is_active,
    migration_id,
    observe,
    poll_interval_s,
)
from qmpdirty.facts.vm import MigrationSnapshot
from tests.support.tracker_runs import T0

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
