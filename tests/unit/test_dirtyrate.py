"""Dirty-rate scheduling and arguments per QEMU version (migration/dirtyrate, facts/qemu)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.decisions.migration.dirtyrate import (
    DirtyRatePlan,
    seconds_until_due,
)
from qmpdirty.facts.qemu import CALC_TIME_UNIT, OLDEST_SUPPORTED, since
from qmpdirty.facts.vm import DirtyRateMode
from qmpdirty.qmp.arguments import calc_dirty_rate_args, query_dirty_rate_args


def plan(mode: DirtyRateMode = "page-sampling", window_s: float = 1.0, sample_pages: int = 512,
         interval_s: float = 30.0) -> DirtyRatePlan:
    return DirtyRatePlan(mode=mode, window_s=window_s, sample_pages=sample_pages,
                         interval_s=interval_s)


@pytest.mark.parametrize(
    ("version", "expected"),
    [((7, 2, 0), False), ((8, 0, 0), False), ((8, 1, 5), False), ((8, 1, 99), False),
     ((8, 2, 0), True), ((8, 2, 1), True), ((9, 0, 0), True), ((10, 0, 2), True)],
)
def test_calc_time_unit_since_8_2(version: tuple[int, int, int], expected: bool) -> None:
    assert CALC_TIME_UNIT == (8, 2, 0)
    assert since(version, CALC_TIME_UNIT) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [((7, 2, 9), False), ((7, 99, 0), False), ((8, 0, 0), True), ((10, 0, 2), True)],
)
def test_supported_since_8_0(version: tuple[int, int, int], expected: bool) -> None:
    assert OLDEST_SUPPORTED == (8, 0, 0)
    assert since(version, OLDEST_SUPPORTED) is expected


ARGS = [
    # QEMU 8.0/8.1: whole seconds, no calc-time-unit
    ((8, 0, 0), plan(window_s=1.0), {"mode": "page-sampling", "calc-time": 1, "sample-pages": 512}),
    ((8, 1, 5), plan(window_s=3.0, sample_pages=256),
     {"mode": "page-sampling", "calc-time": 3, "sample-pages": 256}),
    ((8, 1, 5), plan(window_s=0.5), {"mode": "page-sampling", "calc-time": 1, "sample-pages": 512}),
    ((8, 1, 5), plan(window_s=0.2), {"mode": "page-sampling", "calc-time": 1, "sample-pages": 512}),
    ((8, 1, 5), plan(window_s=2.6), {"mode": "page-sampling", "calc-time": 3, "sample-pages": 512}),
    ((8, 0, 0), plan("dirty-bitmap", window_s=2.0), {"mode": "dirty-bitmap", "calc-time": 2}),
    ((8, 0, 0), plan("dirty-ring", window_s=1.0), {"mode": "dirty-ring", "calc-time": 1}),
    # QEMU 8.2+: milliseconds
    ((8, 2, 0), plan(window_s=0.5), {"mode": "page-sampling", "calc-time": 500,
                                     "calc-time-unit": "millisecond", "sample-pages": 512}),
    ((10, 0, 2), plan(window_s=1.0), {"mode": "page-sampling", "calc-time": 1000,
                                      "calc-time-unit": "millisecond", "sample-pages": 512}),
    ((10, 0, 2), plan(window_s=0.0001), {"mode": "page-sampling", "calc-time": 1,
                                         "calc-time-unit": "millisecond", "sample-pages": 512}),
    ((10, 0, 2), plan("dirty-bitmap", window_s=0.25), {"mode": "dirty-bitmap", "calc-time": 250,
                                                        "calc-time-unit": "millisecond"}),
    ((9, 2, 0), plan("dirty-ring", window_s=60.0), {"mode": "dirty-ring", "calc-time": 60000,
                                                     "calc-time-unit": "millisecond"}),
]


@pytest.mark.parametrize(("version", "p", "expected"), ARGS)
def test_calc_dirty_rate_args(version: tuple[int, int, int], p: DirtyRatePlan,
                              expected: dict[str, object]) -> None:
    assert calc_dirty_rate_args(p, version) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [((8, 0, 0), {}), ((8, 1, 5), {}), ((8, 2, 0), {"calc-time-unit": "millisecond"}),
     ((10, 0, 2), {"calc-time-unit": "millisecond"})],
)
def test_query_dirty_rate_args_match_the_unit(version: tuple[int, int, int],
                                              expected: dict[str, object]) -> None:
    assert query_dirty_rate_args(version) == expected
    calc = calc_dirty_rate_args(plan(), version)
    assert calc.get("calc-time-unit") == expected.get("calc-time-unit")


@settings(max_examples=200, deadline=None)
@given(
    window_s=st.floats(0.001, 60.0),
    version=st.tuples(st.integers(8, 11), st.integers(0, 3), st.integers(0, 3)),
    mode=st.sampled_from(["page-sampling", "dirty-bitmap", "dirty-ring"]),
)
def test_calc_time_is_a_positive_integer_close_to_the_window(
    window_s: float, version: tuple[int, int, int], mode: DirtyRateMode
) -> None:
    args = calc_dirty_rate_args(plan(mode, window_s=window_s), version)
    calc_time = args["calc-time"]
    assert isinstance(calc_time, int) and calc_time >= 1
    unit_s = 0.001 if since(version, CALC_TIME_UNIT) else 1.0
    assert abs(calc_time * unit_s - window_s) <= max(unit_s / 2, unit_s - window_s) + 1e-9
    assert ("sample-pages" in args) == (mode == "page-sampling")


@pytest.mark.parametrize(
    ("now", "last", "migrating", "measuring", "expected"),
    [
        (1000.0, None, False, False, 0.0),  # never measured: now
        (1010.0, 1000.0, False, False, 20.0),
        (1029.5, 1000.0, False, False, 0.5),
        (1030.0, 1000.0, False, False, 0.0),
        (2000.0, 1000.0, False, False, 0.0),  # overdue: now, never negative
        (999.0, 1000.0, False, False, 31.0),  # clock stepped back
        (2000.0, 1000.0, True, False, None),  # a migration is running
        (2000.0, 1000.0, False, True, None),  # a measurement is running
        (2000.0, None, True, False, None),
        (2000.0, None, False, True, None),
    ],
)
def test_seconds_until_due(now: float, last: float | None, migrating: bool, measuring: bool,
                           expected: float | None) -> None:
    assert seconds_until_due(plan(interval_s=30.0), now, last, migrating, measuring) == expected


def test_spread_scales_only_the_interval() -> None:
    assert seconds_until_due(plan(interval_s=30.0), 1000.0, 1000.0, False, False,
                             spread=0.5) == 15.0
    assert seconds_until_due(plan(interval_s=30.0), 1000.0, None, False, False,
                             spread=1.5) == 0.0  # the first measurement is never delayed
