"""The facts behind a disagreement between the prediction and QEMU (pure core).

Stage: decisions, after ``inference``, ``tracking`` and ``blockers.reconcile``. When
the prediction still differs from ``blocked-reasons`` (``agree`` false) the payload
must say why it could not do better: ``explain`` names, for every missing or
unexpected blocker, the facts it rests on that nobody could know (evidence of basis
``assumed``) and what the inference found open or contradicted (``Note``). When no
such fact exists, it names the premise qmpdirty cannot check: QEMU lists only the
blockers of the current migration ``mode`` (reference §3.4), and QMP shows every VFIO
device. Must not decide anything else.
"""

from __future__ import annotations

from qmpdirty.decisions.vfio.basis import Evidence, unknown
from qmpdirty.decisions.vfio.blockers import Reconciled, UnknownFact, classify, comparable
from qmpdirty.decisions.vfio.revisions import Note
from qmpdirty.decisions.vfio.tracking import TrackingVerdict

MODE_PREMISE = UnknownFact(
    None, "migration mode", "no unknown fact explains a predicted blocker QEMU does not "
    "report: query-migrate lists only the blockers of the current migration mode "
    "(migrate-set-parameters mode), which qmpdirty does not read and assumes is 'normal'; "
    "otherwise QEMU behaves unlike qmpdirty's model (please report it)")
UNSEEN = UnknownFact(
    None, "devices", "no unknown fact explains a VFIO blocker QEMU reports: a VFIO device "
    "that QMP did not show (a hot-plug in progress?), or QEMU behaves unlike qmpdirty's "
    "model (please report it)")


def explain(verdict: TrackingVerdict, reconciled: Reconciled, notes: tuple[Note, ...]
            ) -> tuple[UnknownFact, ...]:
    """The unknown facts behind ``reconciled``'s disagreement (empty when it agrees)."""
    if not reconciled.disagrees:
        return ()
    evidence: list[Evidence] = []
    paths: set[str | None] = set()
    for text in reconciled.missing:
        for b in verdict.blockers:
            if b.text == text:
                evidence += b.evidence
                paths |= {b.device} if b.device else {e.device for e in b.evidence}
    for text in reconciled.unexpected:
        found = _devices_named(verdict, text)
        if not found:  # a global blocker, or one naming no device QMP shows: any may be wrong
            found = {d.state.device.qom_path for d in verdict.devices}
            evidence += verdict.global_evidence
        paths |= found
        evidence += [e for d in verdict.devices if d.state.device.qom_path in found
                     for e in d.evidence]
    facts = [UnknownFact(e.device, e.fact, e.reason) for e in unknown(evidence)]
    facts += [UnknownFact(n.device, n.fact, n.text) for n in notes
              if n.device is None or n.device in paths]
    if facts:
        return tuple(dict.fromkeys(facts))
    return (*((MODE_PREMISE,) if reconciled.missing else ()),
            *((UNSEEN,) if reconciled.unexpected else ()))


def _devices_named(verdict: TrackingVerdict, text: str) -> set[str | None]:
    """The qom paths of the devices an observed blocker names (none for a global one)."""
    seen = classify(text)
    if seen is None or seen.name is None:
        return set()
    name = comparable(f"{seen.name}: ").removesuffix(": ")
    return {d.state.device.qom_path for d in verdict.devices
            if d.state.device.vbasedev_name == name}
