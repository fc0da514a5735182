"""QEMU's VFIO behaviour by version: the one place that knows what changed when (pure).

Each constant is the first QEMU release with the behaviour, with the source that
says so (reference §7, checked against the QEMU trees named in the comments).
Rules elsewhere ask ``since(version, X)``; supporting another release is one edit.
"""

from __future__ import annotations

Version = tuple[int, int, int]

#: Migration protocol v2 + device DMA logging with two ranges (32/64); global vIOMMU
#: and multiple-device blockers (commit 5255bbf4ec16, e46883204c38).
DMA_LOGGING: Version = (8, 0, 0)
#: ``enable-migration`` (OnOffAuto) replaces ``x-enable-migration``; per-device
#: ``%s:``-prefixed blockers (pull of June 2023, "Make VFIO migration non-experimental").
ENABLE_MIGRATION: Version = (8, 1, 0)
#: Multiple devices allowed when all support P2P; third DMA-logging range for vfio-pci
#: BARs >= 4 GiB (pull-vfio-20230911: "Separate vfio-pci ranges", P2P series).
P2P_MULTI_DEVICE: Version = (8, 2, 0)
PCI64_RANGE: Version = (8, 2, 0)
#: IOMMUFD backend (``-object iommufd``, ``iommufd=`` link); no dirty tracking yet.
IOMMUFD: Version = (9, 0, 0)
#: IOMMUFD HWPT dirty tracking; ``x-device-dirty-page-tracking``; blocker text
#: "...doesn't support device and IOMMU dirty tracking"; ``migration-events``.
IOMMUFD_DIRTY: Version = (9, 1, 0)
#: Dirty tracking decoupled from migration ("started" flags, pull-vfio-20241226):
#: no QEMU-side "all dirty" fallback; dirty-bitmap calc-dirty-rate starts VFIO logging.
TRACKING_STARTED: Version = (10, 0, 0)
#: ``qom-list-get`` (QAPI "Since: 10.1").
QOM_LIST_GET: Version = (10, 1, 0)
#: vIOMMU allowed unless the device would use DMA logging; read-only sections left
#: out of the DMA-logging ranges; large-memory type1 blocker (pull-vfio-20260113).
VIOMMU_RELAXED: Version = (11, 0, 0)
READONLY_BYPASS: Version = (11, 0, 0)
LARGE_MEMORY_BLOCKER: Version = (11, 0, 0)


def since(version: Version, first: Version) -> bool:
    """True when ``version`` has the behaviour introduced in ``first``."""
    return version[:2] >= first[:2]
