"""VFIO engine verdicts -> ``tracking`` and ``blockers`` messages (pure core).

Stage: telemetry. Shapes ``decisions.vfio.tracking.TrackingVerdict`` and
``decisions.vfio.blockers.Reconciled`` into the payloads of contract v1, calling the
models with keywords; range results arrive as ``RangeReport`` values computed per
container by ``decisions.vfio``. It must not decide anything nor do I/O.
"""

from __future__ import annotations

from qmpdirty.decisions.vfio.basis import Evidence, merged, summary, unknown
from qmpdirty.decisions.vfio.blocker_texts import Blocker
from qmpdirty.decisions.vfio.container_ranges import RangeReport
from qmpdirty.decisions.vfio.evaluate import VfioVerdict
from qmpdirty.decisions.vfio.tracking import ContainerVerdict, DeviceVerdict
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.topics import TopicKind


def _iova(ranges: tuple[tuple[int, int], ...]) -> list[schema.IovaRange]:
    return [schema.IovaRange(iova=i, length=n) for i, n in ranges]


def _fact(e: Evidence) -> schema.FactBasis:
    return schema.FactBasis(name=e.fact, value=e.value, device=e.device, basis=e.basis,
                            reason=e.reason)


def _device(d: DeviceVerdict) -> schema.TrackedDevice:
    dev = d.state.device
    host = d.state.host
    basis, why = d.basis
    return schema.TrackedDevice(
        id=dev.id, qom_path=dev.qom_path, qom_type=dev.qom_type, host_bdf=dev.bdf,
        name=dev.vbasedev_name, driver=host.driver.value if host else None, backend=d.backend,
        container=d.container, mode=d.mode, reasons=list(d.reasons), basis=basis,
        basis_reason=why, facts=[_fact(e) for e in merged(d.evidence)],
    )


def _container(c: ContainerVerdict, r: RangeReport) -> schema.TrackedContainer:
    basis, why = c.basis
    return schema.TrackedContainer(
        id=c.id, backend=c.backend, mode=c.engine,
        devices=[s.device.qom_path for s in c.devices], reasons=list(c.reasons),
        basis=basis, basis_reason=why,
        ranges=_iova(r.ranges), fits=r.fits, limits=list(r.limits),
        optimal_ranges=_iova(r.optimal) if r.optimal is not None else None,
    )


def tracking(stamp: VmStamp, v: VfioVerdict) -> Outgoing:
    """``vm/<vm>/tracking``."""
    return vm_message(stamp, TopicKind.TRACKING, tracking_payload(stamp, v))


def blockers(stamp: VmStamp, v: VfioVerdict) -> Outgoing:
    """``vm/<vm>/blockers``."""
    return vm_message(stamp, TopicKind.BLOCKERS, blockers_payload(stamp, v))


def tracking_payload(stamp: VmStamp, v: VfioVerdict) -> schema.TrackingPayload:
    """The ``vm/<vm>/tracking`` payload (``probe`` prints it as it is)."""
    verdict, ranges = v.verdict, v.ranges
    return schema.TrackingPayload(
        **stamp.common(), qemu_version=v.topology.basics.version_text,
        devices=[_device(d) for d in verdict.devices],
        containers=[_container(c, ranges.get(c.id, RangeReport()))
                    for c in verdict.containers],
        realize_errors=list(verdict.realize_errors),
        complete=not unknown(verdict.evidence),
    )


def blockers_payload(stamp: VmStamp, v: VfioVerdict) -> schema.BlockersPayload:
    """The ``vm/<vm>/blockers`` payload (``probe`` prints it as it is)."""
    r = v.reconciled
    return schema.BlockersPayload(
        **stamp.common(), migratable=r.migratable,
        predicted=[_predicted(b) for b in r.predicted],
        observed=list(r.observed), agree=r.agree, missing=list(r.missing),
        unexpected=list(r.unexpected), unmodelled=list(r.unmodelled),
        unknown_facts=[schema.UnknownFact(device=u.device, fact=u.fact, reason=u.reason)
                       for u in r.unknown_facts],
    )


def _predicted(b: Blocker) -> schema.PredictedBlocker:
    basis, why = summary(b.evidence)
    return schema.PredictedBlocker(text=b.text, device=b.device, cause=b.kind.value,
                                   remedy=b.remedy, basis=basis, basis_reason=why)
