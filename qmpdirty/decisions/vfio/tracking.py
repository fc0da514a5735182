"""Which dirty tracker QEMU will use, per VFIO container and device (pure core).

Stage: decisions. Builds on ``realize.replay`` (per-device outcome at realize) and
reproduces migration start (reference §1.1, §1.4):

* containers (``vfio_address_space_get`` / ``vfio_container_connect``, hw/vfio):
  legacy devices without a vIOMMU share one type1 container on system memory;
  devices with the same ``iommufd`` object share one IOMMUFD container; a device
  behind a vIOMMU has its own address space, hence its own container;
* the engine (``vfio_listener_log_global_start``): DMA logging only if *every*
  device in the container can log (``vfio_devices_all_device_dirty_tracking``),
  else the container's IOMMU tracking (``vfio_container_set_dirty_page_tracking``):
  type1 reports every mapped page dirty; IOMMUFD tracks only devices on a HWPT
  with the dirty flag; since 10.0 a container without either tracks nothing
  (QEMU <= 9.2 marked whole sections dirty itself).

Modes (design.md): ``device``, ``iommu``, ``all-dirty``, ``unsafe``, ``blocked``,
``failover``. Each mode and engine carries the evidence it rests on (``basis``): the
device's own realize evidence plus what the container's engine choice consulted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.decisions.vfio.basis import Evidence, merged, summary
from qmpdirty.decisions.vfio.blocker_texts import Blocker
from qmpdirty.decisions.vfio.realize import DeviceState, replay
from qmpdirty.facts.fact import Basis
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.qemu import TRACKING_STARTED, QemuVersion, since
from qmpdirty.facts.topology import VmTopology

Mode = Literal["device", "iommu", "all-dirty", "unsafe", "blocked", "failover"]
Engine = Literal["device", "iommu", "all-dirty", "none"]
Backend = Literal["legacy", "iommufd", "vfio-user", "none"]


@dataclass(frozen=True, slots=True)
class DeviceVerdict:
    state: DeviceState
    container: str | None
    backend: Backend
    mode: Mode
    reasons: tuple[str, ...]
    evidence: tuple[Evidence, ...] = ()  # what the mode rests on

    @property
    def basis(self) -> tuple[Basis, str]:
        return summary(self.evidence)


@dataclass(frozen=True, slots=True)
class ContainerVerdict:
    id: str
    backend: Backend
    devices: tuple[DeviceState, ...]
    engine: Engine
    reasons: tuple[str, ...]
    evidence: tuple[Evidence, ...] = ()  # what the engine choice consulted

    @property
    def basis(self) -> tuple[Basis, str]:
        return summary(self.evidence)

    @property
    def vfio_owners(self) -> frozenset[str]:
        """How ``info mtree -o`` names these devices' regions' owner (id, else QOM path)."""
        return frozenset(s.device.id or s.device.qom_path for s in self.devices)


@dataclass(frozen=True, slots=True)
class TrackingVerdict:
    """Everything decided about one VM's VFIO dirty tracking and blockers."""

    devices: tuple[DeviceVerdict, ...]
    containers: tuple[ContainerVerdict, ...]
    blockers: tuple[Blocker, ...]  # predicted, in the order QEMU adds them
    realize_errors: tuple[str, ...]
    #: facts behind the absence of the multiple-devices blocker (its checks passed)
    global_evidence: tuple[Evidence, ...] = ()

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        """Every fact any decision of this verdict rests on."""
        return merged(*(d.evidence for d in self.devices), *(b.evidence for b in self.blockers),
                      self.global_evidence)


def container_of(s: DeviceState) -> tuple[str | None, Backend]:
    """The container a device joins (reference §1.1)."""
    d = s.device
    if d.qom_type == "vfio-user-pci":
        return f"vfio-user:{d.qom_path}", "vfio-user"
    backend: Backend = "iommufd" if d.iommufd else "legacy"
    if s.behind_viommu:
        return f"{backend}:viommu:{d.qom_path}", backend
    return (f"iommufd:{d.iommufd}", backend) if d.iommufd else ("legacy:memory", backend)


def _engine_evidence(backend: Backend, members: list[DeviceState], device_logging: bool
                     ) -> tuple[Evidence, ...]:
    """What the engine choice consulted: every member's DMA logging when all log, else
    why the others cannot (a member that never probed it - failover, migration off or
    missing - by what stopped it) and, on IOMMUFD, every member's HWPT dirty flag."""
    logs = [(s.dma_evidence,) if s.dma_evidence else s.evidence
            for s in members if device_logging or not s.dma_logging]
    hwpts = [s.iommu_evidence for s in members] if backend == "iommufd" and not device_logging \
        else []
    return merged(*logs, (e for e in hwpts if e is not None))


def _engine(version: QemuVersion, backend: Backend,
            members: list[DeviceState]) -> tuple[Engine, str]:
    if all(s.dma_logging for s in members):
        return "device", ("every device in the container does DMA logging "
                          "(vfio_devices_all_device_dirty_tracking)")
    lacking = ", ".join(s.device.vbasedev_name for s in members if not s.dma_logging)
    head = f"{lacking} cannot DMA-log, so the container uses IOMMU tracking"
    if backend == "legacy":
        return "all-dirty", (f"{head}: type1 VFIO_IOMMU_DIRTY_PAGES reports every mapped page "
                             "dirty (vfio_iommu_type1 update_user_bitmap)")
    if backend == "iommufd" and any(s.iommu_dirty for s in members):
        return "iommu", f"{head}: IOMMUFD HWPT dirty tracking (IOMMU_HWPT_SET_DIRTY_TRACKING)"
    if not since(version, TRACKING_STARTED):
        return "all-dirty", (f"{head}, which is missing; QEMU < 10.0 marks every section "
                             "dirty itself (vfio_get_dirty_bitmap fallback)")
    return "none", (f"{head}, which is missing: since 10.0 nothing reports dirty pages "
                    "(log_sync waits for tracking that never starts)")


def _device_mode(s: DeviceState, engine: Engine) -> tuple[Mode, str]:
    if s.special == "failover":
        return "failover", "failover primary: unplugged before migration, not tracked"
    if s.blocker is not None or s.realize_error is not None:
        return "blocked", "QEMU refuses to migrate with this device"
    if s.special == "vfio-user":
        return "unsafe", "no migration support and no blocker: device state is not migrated"
    if engine == "device":
        return "device", "device DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START)"
    if engine == "iommu":
        if s.iommu_dirty:
            return "iommu", "tracked by its IOMMUFD HWPT with IOMMU_HWPT_ALLOC_DIRTY_TRACKING"
        return "unsafe", ("its HWPT has no dirty tracking while the container uses IOMMU "
                          "tracking: its DMA writes are not reported")
    if engine == "all-dirty":
        return "all-dirty", "every mapped page reported dirty on every sync"
    return "unsafe", "QEMU migrates it with no dirty-page reporting at all"


def decide(topology: VmTopology, host: HostFacts) -> TrackingVerdict:
    """Replay realize, group containers, choose engines and modes."""
    states, global_blockers, global_evidence = replay(topology, host)
    groups: dict[str, list[DeviceState]] = {}
    backends: dict[str, Backend] = {}
    for s in states:
        cid, backend = container_of(s)
        if cid is not None and s.special != "non-migratable":
            groups.setdefault(cid, []).append(s)
            backends[cid] = backend
    containers: dict[str, ContainerVerdict] = {}
    for cid, members in groups.items():
        engine, why = _engine(topology.basics.version, backends[cid], members)
        evidence = _engine_evidence(backends[cid], members, engine == "device")
        containers[cid] = ContainerVerdict(cid, backends[cid], tuple(members), engine, (why,),
                                           evidence)
    devices = [_device(s, containers) for s in states]
    ordered = _qemu_order(states, global_blockers)
    errors = tuple(s.realize_error for s in states if s.realize_error)
    return TrackingVerdict(tuple(devices), tuple(containers.values()), ordered, errors,
                           tuple(global_evidence))


def _device(s: DeviceState, containers: dict[str, ContainerVerdict]) -> DeviceVerdict:
    """One device's mode: its realize outcome, else its container's engine."""
    cid, backend = container_of(s)
    container = containers.get(cid or "")
    mode, why = _device_mode(s, container.engine if container else "none")
    evidence = s.evidence
    if container is not None and mode in ("device", "iommu", "all-dirty", "unsafe") \
            and s.special is None:
        evidence = merged(s.evidence, container.evidence)
    return DeviceVerdict(s, cid if container else None, backend, mode,
                         (why, *s.reasons, *s.assumptions), evidence)


def _qemu_order(states: list[DeviceState], global_blockers: list[Blocker]) -> tuple[Blocker, ...]:
    """Per-device blockers in realize order, the global one where QEMU added it
    (after the device whose realize triggered it), non-migratable devices last
    (``fill_source_migration_info`` appends ``qemu_savevm_non_migratable_list``)."""
    out: list[Blocker] = []
    for s in states:
        out += [g for g in global_blockers if g.trigger == s.device.qom_path]
        if s.blocker is not None and s.special != "non-migratable":
            out.append(s.blocker)
    out += [s.blocker for s in states if s.blocker is not None and s.special == "non-migratable"]
    return tuple(out)
