"""Benchmarks of the DMA-logging range engine (decisions/ranges.py, decisions/planner.py).

(a) facts -> ranges decision (``predict_ranges`` + ``check_fit``) for a flat view of
    10,000 sections; median of several runs; target < 50 ms.
(b) ``optimal_plan`` of 1,000,000 mappings to 256 ranges, input in random order;
    target < 1 s. The mappings are created in address order and then shuffled, as a
    producer would build them; the same run on already-sorted input is shown too.
(c) speed-up of ``optimal_plan`` over ``kernel_combine`` (the kernel's O(n·(n-K))
    smallest-gap loop) on 20,000 mappings to 256 ranges, both giving the same ranges.
Inputs come from a seeded generator so that runs compare.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

from qmpdirty.decisions.vfio.planner import Span, kernel_combine, normalise, optimal_plan
from qmpdirty.decisions.vfio.ranges import check_fit, predict_ranges
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostDevice
from qmpdirty.facts.topology import FlatKind, FlatSection

T = TypeVar("T")
SEED = 20240611
VFIO = "hostdev0"
VERSION = (10, 0, 2)


def timed(work: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median wall time in seconds over ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(times), result


def flat_view(count: int, rng: random.Random) -> list[FlatSection]:
    """A large, plausible flat view: RAM, ROM, MMIO and vfio BARs, below and above 4 GiB."""
    kinds: list[FlatKind] = ["ram", "ram", "i/o", "rom", "ramd", "romd"]
    sections, address = [], 0
    for i in range(count):
        address += rng.randrange(0, 64) * 0x1000
        size = rng.randrange(1, 512) * 0x1000
        kind = kinds[i % len(kinds)]
        owner = VFIO if kind == "ramd" and i % 2 else None
        sections.append(FlatSection(address, address + size - 1, kind, f"mr{i}", 0, owner))
        address += size
    return sections


def mappings(count: int, rng: random.Random, shuffled: bool = True) -> list[Span]:
    """``count`` page-aligned mappings over 1 TiB, some overlapping, in random order."""
    spread = (1 << 40) // count
    made = [((i * spread + rng.randrange(0, spread)) & ~0xFFF, rng.randrange(1, 64) * 0x1000)
            for i in range(count)]
    if shuffled:
        rng.shuffle(made)
    return made


def mlx5() -> HostDevice:
    yes = Fact(True, "bench")
    return HostDevice("0000:3b:00.1", Fact("mlx5_vfio_pci", "bench"), yes, yes, yes, yes,
                      Fact("dmar0", "bench"), Fact(False, "bench"), max_ranges=2,
                      max_log2_address_space=42)


def bench_decision(sections: int, runs: int) -> dict[str, Any]:
    view = flat_view(sections, random.Random(SEED))
    device = mlx5()
    seconds, fit = timed(
        lambda: check_fit(predict_ranges(view, {VFIO}, VERSION), device), runs)
    return {"name": f"facts->ranges decision, {sections:,} sections", "value": seconds * 1e3,
            "unit": "ms", "target": "< 50",
            "note": f"median of {runs}; predict_ranges + check_fit (mlx5): fits={fit.fits}"}


def bench_optimal(count: int, runs: int) -> list[dict[str, Any]]:
    shuffled = mappings(count, random.Random(SEED))
    ordered = mappings(count, random.Random(SEED), shuffled=False)
    random_s, plan = timed(lambda: optimal_plan(shuffled, 256), runs)
    sorted_s, again = timed(lambda: optimal_plan(ordered, 256), runs)
    assert plan == again
    return [
        {"name": f"optimal_plan, {count:,} mappings -> 256", "value": random_s, "unit": "s",
         "target": "< 1", "note": f"median of {runs}; random order; {len(plan)} ranges"},
        {"name": f"optimal_plan, {count:,} sorted mappings -> 256", "value": sorted_s,
         "unit": "s", "note": f"median of {runs}; already in address order (timsort: one run)"},
    ]


def bench_speedup(count: int, runs: int) -> list[dict[str, Any]]:
    data = mappings(count, random.Random(SEED))
    kernel_s, kernel = timed(lambda: kernel_combine(normalise(data), 256), 1)
    optimal_s, optimal = timed(lambda: optimal_plan(data, 256), runs)
    assert kernel == optimal, "the kernel's greedy and the optimal plan must agree"
    return [
        {"name": f"kernel_combine, {count:,} mappings -> 256", "value": kernel_s, "unit": "s",
         "note": "one run; normalise + vfio_combine_iova_ranges replica"},
        {"name": f"optimal_plan, {count:,} mappings -> 256", "value": optimal_s * 1e3,
         "unit": "ms", "note": f"median of {runs}"},
        {"name": f"speed-up optimal_plan / kernel_combine, {count:,} mappings",
         "value": kernel_s / optimal_s, "unit": "x", "note": "identical ranges"},
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """All three figures; ``quick`` uses tiny sizes and one run (smoke test)."""
    if quick:
        return [bench_decision(200, 1), *bench_optimal(2_000, 1), *bench_speedup(500, 1)]
    return [bench_decision(10_000, 9), *bench_optimal(1_000_000, 3),
            *bench_speedup(20_000, 5)]
