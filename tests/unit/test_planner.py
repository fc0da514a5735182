"""Collapsing mappings into K ranges (decisions/planner.py).

``kernel_combine`` follows Linux's ``vfio_combine_iova_ranges`` step by step;
``optimal_plan`` keeps the K-1 largest gaps. Hypothesis checks that both give the
same ranges, and that both match a brute force over every choice of kept gaps on
small inputs whose union is computed point by point (independent of ``normalise``).
"""

from __future__ import annotations

from itertools import combinations, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.decisions.vfio.planner import (
    Span,
    covered_bytes,
    kernel_combine,
    normalise,
    optimal_plan,
)

# --- kernel_combine, by hand ------------------------------------------------------------


def test_merges_the_smallest_gap_first() -> None:
    # gaps (start - prev last): 0x1000->0x3000: 0x1001, 0x3000->0x10000: 0xc001
    ranges = [(0, 0x1000), (0x2000 + 0x1000, 0x1000), (0x10000, 0x1000)]
    assert kernel_combine(ranges, 2) == ((0, 0x4000), (0x10000, 0x1000))


def test_tie_goes_to_the_lowest_address() -> None:
    # three equal gaps of 0x1000 bytes: the first pair merges, then (new) first again
    ranges = [(0, 0x1000), (0x2000, 0x1000), (0x4000, 0x1000), (0x6000, 0x1000)]
    assert kernel_combine(ranges, 3) == ((0, 0x3000), (0x4000, 0x1000), (0x6000, 0x1000))
    assert kernel_combine(ranges, 2) == ((0, 0x5000), (0x6000, 0x1000))


def test_req_one_spans_first_to_last_and_zero_stops_at_one() -> None:
    ranges = [(0x10000, 0x1000), (0, 0x1000), (0x4000, 0x2000)]  # any order: tree order
    assert kernel_combine(ranges, 1) == ((0, 0x11000),)
    assert kernel_combine(ranges, 0) == ((0, 0x11000),)  # WARN_ON_ONCE path: one node left


def test_enough_room_changes_nothing_even_adjacent() -> None:
    ranges = [(0, 0x1000), (0x1000, 0x1000)]  # adjacent: the kernel keeps both
    assert kernel_combine(ranges, 2) == ((0, 0x1000), (0x1000, 0x1000))
    assert kernel_combine([], 3) == ()


def test_overlap_and_negative_request_are_refused() -> None:
    with pytest.raises(ValueError, match="EINVAL"):
        kernel_combine([(0, 0x2000), (0x1000, 0x1000)], 1)
    with pytest.raises(ValueError, match="u32"):
        kernel_combine([(0, 0x1000)], -1)


# --- optimal_plan and normalise, by hand -------------------------------------------------


def test_normalise_sorts_merges_overlap_and_adjacency_drops_empty() -> None:
    mappings = [(0x5000, 0x1000), (0, 0x2000), (0x1000, 0x2000), (0x3000, 0x1000),
                (0x9000, 0), (0x8000, 0x800)]
    assert normalise(mappings) == ((0, 0x4000), (0x5000, 0x1000), (0x8000, 0x800))


def test_optimal_plan_keeps_the_largest_gaps() -> None:
    mappings = [(0x10_0000, 0x1000), (0, 0x1000), (0x3000, 0x1000), (0x1000, 0x1000)]
    assert optimal_plan(mappings, 1) == ((0, 0x10_1000),)
    assert optimal_plan(mappings, 2) == ((0, 0x4000), (0x10_0000, 0x1000))
    assert optimal_plan(mappings, 3) == ((0, 0x2000), (0x3000, 0x1000), (0x10_0000, 0x1000))
    assert optimal_plan(mappings, 9) == optimal_plan(mappings, 3)
    assert covered_bytes(optimal_plan(mappings, 2)) == 0x5000


def test_optimal_plan_edges() -> None:
    assert optimal_plan([], 4) == ()
    assert optimal_plan([(0x1000, 0)], 4) == ()
    with pytest.raises(ValueError, match="at least one"):
        optimal_plan([(0, 1)], 0)
    with pytest.raises(ValueError, match="length"):
        optimal_plan([(0, -1), (5, 1)], 1)
    with pytest.raises(ValueError, match="iova"):
        optimal_plan([(-5, 1)], 1)


def test_full_64_bit_addresses() -> None:
    top = (1 << 64) - 0x1000
    mappings = [(0, 0x1000), (1 << 63, 0x1000), (top, 0x1000)]
    assert optimal_plan(mappings, 2) == ((0, 0x1000), (1 << 63, (1 << 63) - 0x1000 + 0x1000))
    assert kernel_combine(normalise(mappings), 2) == optimal_plan(mappings, 2)


# --- properties ----------------------------------------------------------------------------

small_mappings = st.lists(st.tuples(st.integers(0, 120), st.integers(0, 12)), max_size=9)
big_mappings = st.lists(st.tuples(st.integers(0, 2**64 - 2**40), st.integers(0, 2**40)),
                        max_size=40)


def brute_force(mappings: list[Span], k: int) -> tuple[int, set[tuple[Span, ...]]]:
    """Minimum covered bytes and every optimal plan, trying all sets of kept gaps."""
    points = sorted({p for start, length in mappings for p in range(start, start + length)})
    blocks: list[list[int]] = []  # [first, last] runs of covered points
    for p in points:
        if blocks and p == blocks[-1][1] + 1:
            blocks[-1][1] = p
        else:
            blocks.append([p, p])
    if not blocks:
        return 0, {()}
    plans: dict[tuple[Span, ...], int] = {}
    for kept in combinations(range(1, len(blocks)), min(k - 1, len(blocks) - 1)):
        cuts = [0, *kept, len(blocks)]
        plan = tuple((blocks[lo][0], blocks[hi - 1][1] - blocks[lo][0] + 1)
                     for lo, hi in pairwise(cuts))
        plans[plan] = covered_bytes(plan)
    best = min(plans.values())
    return best, {plan for plan, size in plans.items() if size == best}


@settings(max_examples=400)
@given(small_mappings, st.integers(1, 6))
def test_both_match_brute_force_on_small_inputs(mappings: list[Span], k: int) -> None:
    best, optimal_plans = brute_force(mappings, k)
    plan = optimal_plan(mappings, k)
    assert covered_bytes(plan) == best and plan in optimal_plans
    assert kernel_combine(normalise(mappings), k) == plan


@settings(max_examples=300)
@given(big_mappings, st.integers(1, 12))
def test_kernel_and_optimal_agree_on_any_input(mappings: list[Span], k: int) -> None:
    plan = optimal_plan(mappings, k)
    assert kernel_combine(normalise(mappings), k) == plan
    assert len(plan) <= k
    for start, length in mappings:  # every mapping lies inside one planned range
        assert length == 0 or any(s <= start and start + length <= s + n for s, n in plan)


@given(big_mappings, st.integers(1, 12))
def test_on_disjoint_non_adjacent_input_no_normalising_is_needed(
    mappings: list[Span], k: int,
) -> None:
    disjoint = normalise(mappings)
    assert kernel_combine(disjoint, k) == optimal_plan(disjoint, k)
    assert normalise(disjoint) == disjoint
