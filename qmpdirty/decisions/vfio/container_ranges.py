"""A container's DMA-logging ranges, their fit, and the optimal plan (pure core).

Stage: decisions. Joins ``tracking`` (which container logs by device) with
``ranges`` (what ``vfio_dirty_tracking_init`` computes from the flat view and
whether kernel and drivers accept it) and ``planner`` (the fewest-bytes cover of
the same mappings within the device's range limit).
"""

from __future__ import annotations

from dataclasses import dataclass

from qmpdirty.decisions.vfio.planner import Span, optimal_plan
from qmpdirty.decisions.vfio.ranges import check_fit, predict_ranges
from qmpdirty.decisions.vfio.tracking import ContainerVerdict
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology


@dataclass(frozen=True, slots=True)
class RangeReport:
    """A container's DMA-logging ranges, whether they fit, and the optimal plan."""

    ranges: tuple[Span, ...] = ()
    fits: bool | None = None
    limits: tuple[str, ...] = ()
    optimal: tuple[Span, ...] | None = None


def container_ranges(c: ContainerVerdict, topology: VmTopology, host: HostFacts) -> RangeReport:
    """Ranges only matter where DMA logging runs (``engine == "device"``)."""
    if c.engine != "device":
        return RangeReport(limits=("no device DMA logging in this container: QEMU hands "
                                   "no IOVA ranges to devices",))
    if any(s.behind_viommu for s in c.devices):
        return RangeReport(limits=(
            "behind a vIOMMU: vfio_dirty_tracking_init replays the vIOMMU's address space "
            "(bcontainer->space->as), whose IOMMU region is not in the system-memory flat "
            "view; QEMU blocks DMA logging there anyway (vfio_viommu_preset)",))
    if topology.flat_view is None:
        return RangeReport(limits=(f"flat view unavailable ({topology.flat_view_source}): "
                                   "ranges cannot be computed",))
    predicted = predict_ranges(topology.flat_view, c.vfio_owners, topology.basics.version,
                               host.page_size)
    fits: list[bool | None] = []
    limits: list[str] = [*predicted.notes]
    limit_k: list[int] = []
    for s in c.devices:
        device = host.device(s.device.bdf)
        fit = check_fit(predicted, device)
        fits.append(fit.fits)
        limits.append(f"{s.device.vbasedev_name}: {fit.reason}")
        if device is not None and device.max_ranges:
            limit_k.append(device.max_ranges)
    verdict = False if False in fits else (None if None in fits else True)
    mappings = [m.span for m in predicted.mappings]
    optimal = optimal_plan(mappings, min(limit_k)) if limit_k and mappings else None
    return RangeReport(predicted.spans, verdict, tuple(limits), optimal)
