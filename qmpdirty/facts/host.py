"""Facts about the host beneath a VM's VFIO devices (pure core).

Stage: facts. Two kinds: what ``host/sysfs.py`` read from sysfs, debugfs, proc and
/boot, each file as ``Text`` or ``Unread`` with the reason (``RawDevice`` and the
views); and what ``decisions/vfio/host_caps.py`` made of it (``IommuView``,
``HostDevice``, ``HostFacts``). Plain immutable values, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from qmpdirty.facts.fact import Fact

# --- raw readings -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """A file's text; ``label`` names it in sources ("sysfs class/iommu/dmar0/...")."""

    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Unread:
    """A file that gave no text and why; ``absent``: it does not exist."""

    label: str
    why: str
    absent: bool = False

    @property
    def reason(self) -> str:
        return f"{self.label} absent" if self.absent else f"cannot read {self.label}: {self.why}"


Read = Text | Unread

DebugfsState = Literal["unmounted", "unreadable", "no-vfio", "no-device", "no-migration",
                       "migration"]
IommuKind = Literal["intel", "amd", "arm-smmu-v3", "other"]


@dataclass(frozen=True, slots=True)
class DebugfsView:
    """What debugfs shows of one device: ``<root>/vfio/<address>/migration/features``."""

    root: str  # the configured mount point, for messages
    state: DebugfsState
    detail: str = ""  # why the root is unreadable
    features: Read | None = None  # state "migration" only


@dataclass(frozen=True, slots=True)
class IommuFiles:
    """What sysfs shows of the device's IOMMU unit, as read: ``unit`` is the basename of
    its ``iommu`` link, ``entries`` those of ``class/iommu/<unit>``, then the register
    files of each kind the interpretation knows (a unit has one kind's; the others read
    as absent). Only ``unit`` when the link gave no name."""

    unit: Read
    entries: frozenset[str] = frozenset()
    intel_ecap: Read | None = None  # intel-iommu/ecap
    intel_cap: Read | None = None  # intel-iommu/cap
    amd_features: Read | None = None  # amd-iommu/features


@dataclass(frozen=True, slots=True)
class IommuView:
    """The device's IOMMU unit, its kind told (``host_caps.iommu_view``): ``unit`` is the
    basename of its sysfs ``iommu`` link, ``registers`` that kind's register file."""

    unit: Read
    kind: IommuKind = "other"
    registers: Read | None = None  # Intel intel-iommu/ecap, AMD amd-iommu/features
    cap: Read | None = None  # Intel intel-iommu/cap (address width)


@dataclass(frozen=True, slots=True)
class RawDevice:
    """Everything read about one device, before interpretation."""

    address: str  # canonical BDF, or an mdev UUID
    mdev: bool
    present: bool  # listed under sysfs bus/pci/devices (bus/mdev/devices)
    driver: Read  # Text: basename of the ``driver`` link
    debugfs: DebugfsView
    iommu: IommuFiles | None  # None for an mdev


# --- interpreted ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostDevice:
    """What the host says about one physical device backing a VFIO device."""

    bdf: str
    driver: Fact[str]
    migration: Fact[bool]  # driver has mig_ops with STOP_COPY
    p2p: Fact[bool]
    pre_copy: Fact[bool]
    dma_logging: Fact[bool]  # log_ops: what QEMU's PROBE(DMA_LOGGING_START) tests
    iommu_unit: Fact[str]
    iommu_dirty_tracking: Fact[bool]  # host IOMMU unit can do dirty tracking (§5.1)
    mdev: bool = False
    max_ranges: int | None = None  # device range limit (config: mlx5/pds firmware)
    #: "err: %d (%s)" of QEMU's "Migration couldn't be initialized" blocker: known only
    #: from QEMU (``decisions/vfio/inference``); ``migration`` is then false
    init_error: str | None = None
    max_log2_address_space: int | None = None  # mlx5 pg_track_log_max_addr_space


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The host: one ``HostDevice`` per BDF that was asked about, plus global facts."""

    devices: dict[str, HostDevice] = field(default_factory=dict)
    address_width: Fact[int] = field(default_factory=lambda: Fact[int].unknown("not read"))
    page_size: int = 4096

    def device(self, bdf: str | None) -> HostDevice | None:
        return self.devices.get(bdf) if bdf else None
