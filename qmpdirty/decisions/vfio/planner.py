"""Collapse IOVA mappings into at most K ranges: the kernel's way and the optimal way.

Stage: pure core (decisions). Plain integer arithmetic on ``(iova, length)`` pairs;
no I/O, no clock, no logging, and no knowledge of QEMU: ``decisions/ranges`` feeds
it QEMU's ranges (what a driver combines) or the mapped sections (the best case).

Two answers to "cover every mapping with at most K ranges":

* ``kernel_combine`` is Linux's ``vfio_combine_iova_ranges()`` (drivers/vfio/vfio_main.c),
  which mlx5 (``mlx5vf_create_tracker``) and pds (``pds_vfio_dirty_enable``) call when
  the device tracks fewer ranges than QEMU sent: while there are too many nodes, merge
  the neighbours with the smallest gap ``curr->start - prev->last`` (scan in address
  order, strict ``<``: the lowest address wins a tie). O(n·(n-K)).
* ``optimal_plan`` gives the fewest covered bytes: merging never changes the other
  gaps, so the result is "split at the K-1 largest gaps". Sorting makes it O(n log n).
  Ties keep the *highest* gaps (the kernel merges the lowest first), so on the same
  normalised input both return identical ranges: the kernel's greedy is optimal.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress, islice, pairwise, repeat
from operator import add, ge, itemgetter, sub

from qmpdirty.errors import RangeInputError

#: ``(iova, length)``: the shape of ``struct vfio_device_feature_dma_logging_range``.
Span = tuple[int, int]

#: ``unsigned long`` on 64-bit kernels; ``min_gap`` starts here and a gap equal to it
#: can never win the strict ``<`` (``WARN_ON_ONCE(min_gap == ULONG_MAX)``).
ULONG_MAX = (1 << 64) - 1


def covered_bytes(spans: Iterable[Span]) -> int:
    """Bytes a set of disjoint ranges covers (what the device must track)."""
    return sum(length for _, length in spans)


def normalise(mappings: Iterable[Span]) -> tuple[Span, ...]:
    """Sorted, disjoint, non-adjacent ranges covering exactly the mappings' union.

    Zero-length mappings cover nothing and are dropped; a negative length or iova is
    a caller error (RangeInputError, a ValueError).
    """
    ordered = sorted((m for m in mappings if m[1] != 0), key=itemgetter(0))
    if any(iova < 0 or length < 0 for iova, length in ordered):
        raise RangeInputError("mappings need iova >= 0 and length >= 0")
    blocks: list[list[int]] = []
    for iova, length in ordered:
        end = iova + length  # exclusive
        if blocks and iova <= blocks[-1][1]:
            blocks[-1][1] = max(blocks[-1][1], end)
        else:
            blocks.append([iova, end])
    return tuple((start, end - start) for start, end in blocks)


def kernel_combine(ranges: Sequence[Span], k: int) -> tuple[Span, ...]:
    """Linux ``vfio_combine_iova_ranges(root, cur_nodes, req_nodes=k)``, step by step.

    ``ranges`` must be disjoint (the kernel's ``vfio_ioctl_device_feature_logging_start``
    rejects overlaps with -EINVAL before any driver sees them); they are visited in
    address order, as the interval tree iterates. ``k == 1`` is the kernel's shortcut
    ``[first->start, last->last]``; ``k == 0`` merges down to one node, where the
    kernel's ``WARN_ON_ONCE`` stops the loop. The kernel rescans every gap on each
    pass; merging leaves the other gaps unchanged, so a kept gap list picks exactly
    the same pair (first minimum, i.e. strict ``<``) with C-speed ``min``/``index``.
    """
    if k < 0:
        raise RangeInputError(f"req_nodes is a u32, got {k}")
    nodes = sorted((iova, iova + length - 1) for iova, length in ranges)
    for (_, last), (start, _) in pairwise(nodes):
        if start <= last:
            raise RangeInputError("overlapping ranges: the kernel rejects them with -EINVAL")
    if not nodes:
        return ()
    if k == 1:
        return ((nodes[0][0], nodes[-1][1] - nodes[0][0] + 1),)
    starts = [start for start, _ in nodes]
    lasts = [last for _, last in nodes]
    gaps = [start - last for start, last in zip(starts[1:], lasts, strict=False)]
    while len(starts) > k:
        min_gap = min(gaps, default=ULONG_MAX)
        if min_gap >= ULONG_MAX:  # WARN_ON_ONCE(min_gap == ULONG_MAX): break
            break
        i = gaps.index(min_gap)  # comb_start = node i, comb_end = node i + 1
        lasts[i] = lasts[i + 1]  # comb_start->last = comb_end->last
        del starts[i + 1], lasts[i + 1], gaps[i]  # interval_tree_remove(comb_end)
    return tuple((start, last - start + 1) for start, last in zip(starts, lasts, strict=True))


def optimal_plan(mappings: Iterable[Span], k: int) -> tuple[Span, ...]:
    """The at most ``k`` ranges covering every mapping with the fewest bytes.

    Mappings may be unsorted, overlapping or adjacent. Keeps the ``k - 1`` largest
    gaps of the union (ties: the highest addresses), which equals
    ``kernel_combine(normalise(mappings), k)``. O(n log n): one sort, then C-level
    passes (running maximum of the ends, gap list, ``heapq.nlargest``).
    """
    if k < 1:
        raise RangeInputError(f"at least one range is needed, got k={k}")
    ordered = sorted(mappings, key=itemgetter(0))
    lengths = list(map(itemgetter(1), ordered))
    if lengths and min(lengths) <= 0:  # rare: drop empty mappings, refuse negative ones
        ordered = [m for m in ordered if _checked_length(m[1])]
        lengths = list(map(itemgetter(1), ordered))
    if not ordered:
        return ()
    starts = list(map(itemgetter(0), ordered))
    if starts[0] < 0:
        raise RangeInputError("mappings need iova >= 0")
    reach = list(accumulate(map(add, starts, lengths), max))  # exclusive end so far
    holes = list(map(sub, islice(starts, 1, None), reach))  # > 0: a real hole after i
    cuts = _largest_holes(holes, k - 1)
    bounds = [0, *(i + 1 for i in cuts), len(starts)]
    return tuple((starts[lo], reach[hi - 1] - starts[lo]) for lo, hi in pairwise(bounds))


def _largest_holes(holes: list[int], keep: int) -> list[int]:
    """Indexes of the ``keep`` largest positive holes, ascending; ties keep the highest."""
    if keep <= 0:
        return []
    top = heapq.nlargest(keep, holes)
    threshold = top[-1] if len(top) == keep else 0
    if threshold <= 0:  # no more real holes than we may keep: keep them all
        return [i for i, hole in enumerate(holes) if hole > 0]
    candidates = list(compress(range(len(holes)), map(ge, holes, repeat(threshold))))
    wide = [i for i in candidates if holes[i] > threshold]
    ties = [i for i in candidates if holes[i] == threshold]
    return sorted(wide + ties[len(ties) - (keep - len(wide)):])


def _checked_length(length: int) -> bool:
    if length < 0:
        raise RangeInputError("mappings need length >= 0")
    return length > 0
