"""One VM's VFIO dirty tracking, decided from its facts: the engine's entry point (pure).

Stage: decisions. ``evaluate(topology, host)`` first lets QEMU's observed
``blocked-reasons`` settle the host facts they prove (``inference``), then replays
QEMU's realize-time choices and decides every device's mode and every container's
engine (``tracking``), reconciles the predicted blockers with the observed ones
(``blockers``), names the unknown facts behind any remaining disagreement
(``disagreement``) and computes each container's DMA-logging ranges and their fit
(``container_ranges``). Must not do I/O: the shell gathers the facts, telemetry
shapes the payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qmpdirty.decisions.vfio.blockers import Reconciled, reconcile
from qmpdirty.decisions.vfio.container_ranges import RangeReport, container_ranges
from qmpdirty.decisions.vfio.disagreement import explain
from qmpdirty.decisions.vfio.inference import Inference, infer
from qmpdirty.decisions.vfio.revisions import Note
from qmpdirty.decisions.vfio.tracking import TrackingVerdict, decide
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology


@dataclass(frozen=True, slots=True)
class VfioVerdict:
    """One evaluation of a VM's VFIO dirty tracking, with the facts it rests on
    (``host``: as revised by QEMU's observed state, ``inference``)."""

    topology: VmTopology
    host: HostFacts
    verdict: TrackingVerdict
    reconciled: Reconciled
    ranges: dict[str, RangeReport]
    inference: Inference | None = None


def evaluate(topology: VmTopology, host: HostFacts) -> VfioVerdict:
    """Infer, decide, reconcile, explain, compute each container's ranges."""
    inference = infer(topology, host)
    verdict = _with_notes(decide(topology, inference.host), inference.notes)
    reconciled = reconcile(verdict.blockers, topology.blocked_reasons,
                           modelled=bool(topology.devices))
    reconciled = replace(reconciled, unknown_facts=explain(verdict, reconciled,
                                                           inference.notes))
    ranges = {c.id: container_ranges(c, topology, inference.host) for c in verdict.containers}
    return VfioVerdict(topology, inference.host, verdict, reconciled, ranges, inference)


def _with_notes(verdict: TrackingVerdict, notes: tuple[Note, ...]) -> TrackingVerdict:
    """Each device's reasons end with what QEMU's state left open or contradicted."""
    devices = tuple(replace(d, reasons=(*d.reasons, *(f"QEMU's word: {n.text}" for n in notes
                                                     if n.device == d.state.device.qom_path)))
                    for d in verdict.devices)
    return replace(verdict, devices=devices)
