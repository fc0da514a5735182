"""One VM's VFIO dirty tracking, decided from its facts: the engine's entry point (pure).

Stage: decisions. ``evaluate(topology, host)`` replays QEMU's realize-time choices,
decides every device's mode and every container's engine (``tracking``), reconciles
the predicted blockers with QEMU's observed ``blocked-reasons`` (``blockers``) and
computes each container's DMA-logging ranges and their fit (``container_ranges``).
Must not do I/O: the shell gathers the facts, telemetry shapes the payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmpdirty.decisions.vfio.blockers import Reconciled, reconcile
from qmpdirty.decisions.vfio.container_ranges import RangeReport, container_ranges
from qmpdirty.decisions.vfio.tracking import TrackingVerdict, decide
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology


@dataclass(frozen=True, slots=True)
class VfioVerdict:
    """One evaluation of a VM's VFIO dirty tracking, with the facts it rests on."""

    topology: VmTopology
    host: HostFacts
    verdict: TrackingVerdict
    reconciled: Reconciled
    ranges: dict[str, RangeReport]


def evaluate(topology: VmTopology, host: HostFacts) -> VfioVerdict:
    """Decide, reconcile, compute each container's ranges."""
    verdict = decide(topology, host)
    reconciled = reconcile(verdict.blockers, topology.blocked_reasons)
    ranges = {c.id: container_ranges(c, topology, host) for c in verdict.containers}
    return VfioVerdict(topology, host, verdict, reconciled, ranges)
