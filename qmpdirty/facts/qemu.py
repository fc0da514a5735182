"""QEMU by version: the one place that knows what changed when (pure facts).

Stage: facts. Every version-dependent choice in qmpdirty, *how to ask QEMU* as well
as *what QEMU will do*, asks ``since(version, X)`` with one of the constants below.
Each names the first release with the behaviour and the source that says so
(reference §7, checked against the QEMU trees named in the comments, and the
``Since:`` lines of QEMU's QAPI schema). Supporting another release is one edit here.
Must not do I/O.
"""

from __future__ import annotations

from typing import TypeAlias

#: A QEMU release as (major, minor, micro), from ``query-version``.
QemuVersion: TypeAlias = tuple[int, int, int]

# --- Supported range ----------------------------------------------------------------

#: Oldest QEMU whose replies qmpdirty is built against (design: 8.0 and newer).
OLDEST_SUPPORTED: QemuVersion = (8, 0, 0)
#: The version ``qmpdirty ranges`` assumes for a flat view read from a file when none
#: is given: the newest release whose DMA-logging range rules qmpdirty models
#: unchanged from 10.x (11.0 leaves read-only sections out: ``READONLY_BYPASS``).
ASSUMED_FOR_FILES: QemuVersion = (10, 2, 0)

# --- How to ask QEMU ------------------------------------------------------------------

#: ``calc-dirty-rate`` / ``query-dirty-rate`` accept ``calc-time-unit`` (QAPI "Since: 8.2").
CALC_TIME_UNIT: QemuVersion = (8, 2, 0)
#: ``qom-list-get`` (QAPI "Since: 10.1").
QOM_LIST_GET: QemuVersion = (10, 1, 0)
#: There is no ``DEVICE_ADDED`` QMP event up to and including this release (qapi/qdev.json
#: has only DEVICE_DELETED): a hot-plug is noticed by listing the device containers.
LAST_WITHOUT_DEVICE_ADDED: QemuVersion = (10, 2, 0)
#: ``vfio-user-pci``: a VFIO device served by another process over a UNIX socket, which
#: needs no VFIO device on the host (hw/vfio-user/; 10.1 in the reference's table, from
#: memory: hot-plug polling takes it as given from this release on).
VFIO_USER_PCI: QemuVersion = (10, 1, 0)

# --- What QEMU does: migration ----------------------------------------------------------

#: ``max-bandwidth`` when nobody set it: ``MAX_THROTTLE`` (migration/options.c, 128 MiB/s
#: since 5.1, 32 MiB/s before; read back as 134217728 from 10.0.2). The same in every
#: supported release. A cap, not a measurement: under libvirt the link sets the pace.
MAX_BANDWIDTH_DEFAULT = 128 << 20
#: What a page costs on the wire in a pre-copy pass without multifd or compression
#: (migration/ram.c): a page with content is its ``save_page_header`` (8 bytes: offset
#: and flags) and the page; a zero page is the header and one byte (``save_zero_page``).
#: A header that starts another RAMBlock adds its name; ignored.
PAGE_HEADER_BYTES = 8
ZERO_PAGE_WIRE_BYTES = 9

#: ``migrate-set-parameters vcpu-dirty-limit`` with the ``dirty-limit`` capability
#: (QAPI "Since: 8.1"; KVM's dirty ring only).
DIRTY_LIMIT: QemuVersion = (8, 1, 0)

# --- What QEMU does: dirty-rate page sampling (migration/dirtyrate.[ch]) ----------------

#: ``calc-dirty-rate sample-pages`` is pages per GiB of guest RAM; QEMU refuses values
#: outside [MIN_SAMPLE_PAGE_COUNT, MAX_SAMPLE_PAGE_COUNT] (``is_sample_pages_valid``:
#: "sample-pages is out of range[128, 16384]", checked on 10.0.2) and uses
#: DIRTYRATE_DEFAULT_SAMPLE_PAGES when none is given. The same in every supported release.
SAMPLE_PAGES_MIN = 128
SAMPLE_PAGES_MAX = 16384
SAMPLE_PAGES_DEFAULT = 512

# --- What QEMU does: VFIO -----------------------------------------------------------------

#: Migration protocol v2 + device DMA logging with two ranges (32/64); global vIOMMU
#: and multiple-device blockers (commit 5255bbf4ec16, e46883204c38).
DMA_LOGGING: QemuVersion = (8, 0, 0)
#: ``enable-migration`` (OnOffAuto) replaces ``x-enable-migration``; per-device
#: ``%s:``-prefixed blockers (pull of June 2023, "Make VFIO migration non-experimental").
ENABLE_MIGRATION: QemuVersion = (8, 1, 0)
#: Multiple devices allowed when all support P2P; third DMA-logging range for vfio-pci
#: BARs >= 4 GiB (pull-vfio-20230911: "Separate vfio-pci ranges", P2P series).
P2P_MULTI_DEVICE: QemuVersion = (8, 2, 0)
PCI64_RANGE: QemuVersion = (8, 2, 0)
#: IOMMUFD backend (``-object iommufd``, ``iommufd=`` link); no dirty tracking yet.
IOMMUFD: QemuVersion = (9, 0, 0)
#: IOMMUFD HWPT dirty tracking; ``x-device-dirty-page-tracking``; blocker text
#: "...doesn't support device and IOMMU dirty tracking"; ``migration-events``.
IOMMUFD_DIRTY: QemuVersion = (9, 1, 0)
#: Dirty tracking decoupled from migration ("started" flags, pull-vfio-20241226):
#: no QEMU-side "all dirty" fallback; a dirty-bitmap or dirty-ring ``calc-dirty-rate``
#: window starts VFIO dirty tracking (DMA logging / IOMMU) too (reference §4.8).
TRACKING_STARTED: QemuVersion = (10, 0, 0)
#: vIOMMU allowed unless the device would use DMA logging; read-only sections left
#: out of the DMA-logging ranges; large-memory type1 blocker (pull-vfio-20260113).
VIOMMU_RELAXED: QemuVersion = (11, 0, 0)
READONLY_BYPASS: QemuVersion = (11, 0, 0)
LARGE_MEMORY_BLOCKER: QemuVersion = (11, 0, 0)


#: Stands for "no version known" where a version is required (never a real release).
UNKNOWN_VERSION: QemuVersion = (0, 0, 0)
#: QEMU makes three feature releases a year, x.0, x.1 and x.2 (since 7.0; older majors
#: had fewer, all before ``OLDEST_SUPPORTED``): the last minor of a major.
LAST_MINOR = 2


def since(version: QemuVersion, first: QemuVersion) -> bool:
    """True when ``version`` has the behaviour introduced in ``first`` (every constant
    above is an x.y.0 release, so major.minor decides: a stable 10.0.2 has 10.0's)."""
    return version[:2] >= first[:2]


def version_text(version: QemuVersion) -> str:
    """A version as QEMU prints it, and as ``info`` publishes it: ``"10.0.2"``."""
    return ".".join(str(part) for part in version)


def release_text(release: QemuVersion) -> str:
    """A feature release as texts name it: ``"10.1"`` (the micro part is a stable fix,
    which ``since`` ignores too)."""
    return f"{release[0]}.{release[1]}"


def release_before(release: QemuVersion) -> QemuVersion:
    """The feature release before ``release`` (x.0's is the previous major's x.2), so
    a text can say "QEMU <= 10.2" of what changed in 11.0 (``LAST_MINOR``)."""
    major, minor = release[0], release[1]
    return (major, minor - 1, 0) if minor else (major - 1, LAST_MINOR, 0)

