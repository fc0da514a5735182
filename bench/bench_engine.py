"""facts -> decision for one VM, end to end through the pure core (issue 3, item 9).

A q35-like VM whose flat view has N sections (RAM split by many small ram/i/o
regions, like a VM with many memory devices and BARs) and two mlx5 devices that
DMA-log in one container: ``evaluate_facts`` (realize replay, containers, engines,
reconcile, DMA-logging ranges, kernel/driver fit, optimal plan) plus rendering the
``tracking`` and ``blockers`` payloads. Target: under 50 ms for 10,000 sections.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from qmpdirty.decisions.vfio.evaluate import evaluate as evaluate_facts
from qmpdirty.demo.lab.vfio_cases import dev, host_dev, hosts, topo
from qmpdirty.facts.topology import FlatSection
from qmpdirty.telemetry.render import VmStamp, vfio
from qmpdirty.telemetry.topics import Topics

GIB = 2**30


def flat_view(n: int) -> tuple[FlatSection, ...]:
    """``n`` sections: alternating 2 MiB RAM and 4 KiB MMIO above 4 GiB, plus two BARs."""
    out = [FlatSection(0, 0x9FFFF, "ram", "pc.ram", owner="/objects/pc.ram")]
    base = 4 * GIB
    for i in range(n - 3):
        ram = i % 2 == 0
        size = 2 * 2**20 if ram else 4096
        out.append(FlatSection(base, base + size - 1, "ram" if ram else "i/o", f"s{i}"))
        base += size
    for k in range(2):
        start = 0x380000000000 + k * 0x1000000
        out.append(FlatSection(start, start + 0xFFFFFF, "ramd", f"0000:3b:00.{k} BAR 0 mmaps[0]",
                               owner=f"hostdev{k}"))
    return tuple(out)


def bench_decision(sections: int, runs: int) -> dict[str, Any]:
    topology = replace(topo("10.2", dev(0), dev(1)), flat_view=flat_view(sections))
    host = hosts(*(host_dev(n, "mlx5_vfio_pci", max_ranges=8, max_log2_address_space=46)
                   for n in range(2)))
    stamp = VmStamp(Topics.create("qmpdirty", "h"), "vm", 1, 0.0)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        view = evaluate_facts(topology, host)
        vfio.tracking(stamp, view)
        vfio.blockers(stamp, view)
        times.append((time.perf_counter() - started) * 1000)
    modes = sorted({d.mode for d in view.verdict.devices})
    fits = view.ranges[view.verdict.containers[0].id].fits
    return {"name": f"facts->decision+payloads, {sections:,} flat-view sections",
            "value": statistics.median(times), "unit": "ms", "target": "< 50",
            "note": f"median of {runs}; 2 mlx5 devices, modes {modes}, fits={fits}"}


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [bench_decision(200, 1)] if quick else [bench_decision(10_000, 9)]
