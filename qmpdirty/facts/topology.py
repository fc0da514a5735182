"""Facts about a VM's VFIO topology, as QEMU shows it over QMP (pure core).

Stage: facts. Filled over QMP by the topology query (``qmp/topology``, driven by
``qmp/gather.py``; ``facts.host`` holds what the host says), read by
``decisions/vfio``. Plain immutable values, no I/O.

A fact that could not be read is ``None`` together with a reason in the matching
``*_source`` field (``Fact``), never an exception: decisions that rest on an
unknown fact say so in their reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.facts.vm import VmBasics

OnOffAuto = Literal["on", "off", "auto"]

#: QOM types of VFIO devices (reference §4.1). vfio-ap / vfio-ccw are non-PCI.
VFIO_PCI_TYPES = frozenset({"vfio-pci", "vfio-pci-nohotplug", "vfio-user-pci"})
VFIO_TYPES = VFIO_PCI_TYPES | {"vfio-ap", "vfio-ccw"}


# --- the VM, over QMP ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VfioDevice:
    """One VFIO device as QOM shows it (properties as QEMU reports them).

    ``None`` for a property means the running QEMU does not have it (older version).
    """

    qom_path: str
    qom_type: str
    id: str | None
    host: str | None  # "0000:3b:00.1"; "ffff:ff:ff.f" when given via sysfsdev/fd
    sysfsdev: str | None  # "/sys/bus/pci/devices/0000:3b:00.1" after realize
    enable_migration: OnOffAuto | None  # 8.1+
    x_enable_migration: bool | None = None  # 5.2-8.0
    device_dirty_page_tracking: OnOffAuto | None = None  # x-device-dirty-page-tracking, 9.1+
    pre_copy_dirty_page_tracking: OnOffAuto | None = None  # x-pre-copy-dirty-page-tracking
    migration_events: bool | None = None  # 9.1+
    iommufd: str | None = None  # QOM path of the iommufd object; None = legacy container
    failover_pair_id: str | None = None
    pci_addr: str | None = None  # "04.0" (slot.function) as QOM `addr`
    bus: str | None = None  # QOM path of the PCI bus the device sits on
    root_bus_bypass_iommu: bool | None = None  # host bridge of its root bus bypasses vIOMMU
    realize_index: int = 0  # order QEMU realized the devices in (see topology gathering)

    @property
    def bdf(self) -> str | None:
        """The host PCI address (from ``host`` or the basename of ``sysfsdev``)."""
        if self.sysfsdev:
            return self.sysfsdev.rstrip("/").rsplit("/", 1)[-1]
        if self.host and self.host != "ffff:ff:ff.f":
            return self.host
        return None

    @property
    def vbasedev_name(self) -> str:
        """QEMU's ``vbasedev->name``, the ``%s`` of every per-device blocker
        (``vfio_device_get_name``, hw/vfio/helpers.c): the basename of ``sysfsdev``
        (host= sets it), else ``VFIO_FD<fd>`` for fd passing. The fd number is not
        visible over QMP: ``VFIO_FD*`` stands for it and matches any number."""
        return self.bdf or FD_NAME


#: The name of an fd-passed device whose fd number QMP does not show.
FD_NAME = "VFIO_FD*"


@dataclass(frozen=True, slots=True)
class Viommu:
    """A virtual IOMMU: ``-device intel-iommu`` etc., or a machine's built-in one."""

    qom_path: str
    qom_type: str  # intel-iommu, amd-iommu, virtio-iommu-pci, arm-smmuv3, or machine:<kind>
    aw_bits: int | None = None
    caching_mode: bool | None = None
    dma_translation: bool | None = None


@dataclass(frozen=True, slots=True)
class MemoryDevice:
    """One ``query-memory-devices`` entry (dimm, nvdimm, virtio-mem, hv-balloon...)."""

    kind: str
    id: str | None
    addr: int | None
    size: int
    max_size: int | None = None  # virtio-mem: the whole device region
    memdev: str | None = None


FlatKind = Literal["ram", "ramd", "rom", "romd", "i/o", "other"]


@dataclass(frozen=True, slots=True)
class FlatSection:
    """One line of ``info mtree -f -o`` (end inclusive, as QEMU prints it)."""

    start: int
    end: int
    kind: FlatKind
    name: str
    offset: int = 0  # offset within the memory region
    owner: str | None = None  # device id or QOM path of the region's owner
    nonvolatile: bool = False


@dataclass(frozen=True, slots=True)
class PciBar:
    """One BAR from ``query-pci`` as the guest programmed it."""

    qdev_id: str | None
    bus: int
    slot: int
    function: int
    bar: int
    kind: Literal["memory", "io"]
    address: int
    size: int
    mem_type_64: bool = False
    prefetch: bool = False


@dataclass(frozen=True, slots=True)
class VmTopology:
    """Everything about one VM that decides VFIO dirty tracking and its ranges."""

    #: version, machine, RAM: in the daemon and probe the very ``VmInfo.basics`` value
    #: (``TopologyQuery(basics=...)``); read by the query itself when used alone
    basics: VmBasics
    devices: tuple[VfioDevice, ...] = ()  # in realize order
    iommufd_objects: tuple[str, ...] = ()
    viommus: tuple[Viommu, ...] = ()
    memory_devices: tuple[MemoryDevice, ...] = ()
    flat_view: tuple[FlatSection, ...] | None = None  # None: could not be read
    flat_view_source: str = ""
    pci_bars: tuple[PciBar, ...] = ()
    blocked_reasons: tuple[str, ...] = ()
    only_migratable: bool | None = None
