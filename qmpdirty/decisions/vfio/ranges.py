"""The IOVA ranges QEMU hands a device for DMA logging, and whether they fit (pure core).

Stage: pure core (decisions). Input: the flat view of address space ``memory`` (from
``qmp/mtree``), the owners of the container's vfio-pci devices, the QEMU version, the
host page size and, for the fit, the ``HostDevice``. Output: values with reasons.
It must not do I/O, read the clock or log: a rejected range set is a value
(``KernelVerdict`` / ``Fit``), never an exception.

QEMU side (hw/vfio/common.c in 10.0, hw/vfio/listener.c in 10.2), reproduced exactly:
``vfio_dirty_tracking_init`` replays every section of the container's address space
through ``vfio_dirty_tracking_update``: ``vfio_listener_valid_section`` (RAM only,
not at/above 2^63, address and region offset congruent modulo the host page; 11.0
also skips read-only sections), ``vfio_get_section_iova_range`` (start rounded up,
end rounded down to host pages), then ``vfio_dirty_tracking_update_range`` widens one
of three buckets: ``pci64`` for a section owned by a vfio-pci device of this container
with ``iova >= UINT32_MAX`` (since 8.2), else ``32`` when ``end <= UINT32_MAX``, else
``64``. ``vfio_device_feature_dma_logging_start_create`` emits the non-empty buckets
in the order 32, 64, pci64: ``num_ranges = !!max32 + !!max64 + !!maxpci64``.

Owners: ``vfio_section_is_vfio_pci`` compares ``memory_region_owner(mr)``, the MR's QOM
parent, while ``info mtree -o`` prints ``owner:`` (``mr->owner``) and adds ``parent:``
only when they differ. A named MR is a QOM child of its owner (vfio's BAR mmaps are
children of the vfio-pci device), and an ownerless one hangs under /machine/unattached,
never a vfio device, so matching on the printed owner gives the same answer.

Not visible in ``info mtree`` and so not modelled: RAM_PROTECTED sections
(confidential guests, skipped by QEMU) and ``vfio_known_safe_misalignment`` (TPM CRB:
skipped silently instead of with an error, skipped all the same). A read-only
non-RAM range would print as ``rom`` and be counted here; QEMU has none in practice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from qmpdirty.decisions.vfio.planner import Span, covered_bytes, kernel_combine
from qmpdirty.facts.host import HostDevice
from qmpdirty.facts.qemu import (
    DMA_LOGGING,
    PCI64_RANGE,
    READONLY_BYPASS,
    QemuVersion,
    release_text,
    since,
)
from qmpdirty.facts.topology import FlatSection

Bucket = Literal["32", "64", "pci64"]
BUCKETS: tuple[Bucket, ...] = ("32", "64", "pci64")  # the order QEMU emits them in
UINT32_MAX = 0xFFFF_FFFF
UINT64_MAX = (1 << 64) - 1
#: Section kinds for which ``memory_region_is_ram()`` holds (``romd``, ``i/o``: not RAM).
RAM_KINDS = frozenset({"ram", "ramd", "rom"})
#: ``sizeof(struct vfio_device_feature_dma_logging_range)`` (include/uapi/linux/vfio.h).
RANGE_STRUCT_SIZE = 16


@dataclass(frozen=True, slots=True)
class Mapping:
    """A section that passed ``vfio_listener_valid_section``, trimmed to host pages."""

    iova: int
    end: int  # inclusive, as QEMU's ``end``
    section: FlatSection

    @property
    def span(self) -> Span:
        return (self.iova, self.end - self.iova + 1)


@dataclass(frozen=True, slots=True)
class SkippedSection:
    """A section QEMU leaves out of the ranges, and the rule that drops it."""

    section: FlatSection
    reason: str


@dataclass(frozen=True, slots=True)
class TrackedRange:
    """One ``vfio_device_feature_dma_logging_range``: a bucket's [min, max]."""

    bucket: Bucket
    iova: int
    length: int
    sections: tuple[Mapping, ...]  # every mapping that went into this bucket

    @property
    def end(self) -> int:
        return self.iova + self.length - 1


@dataclass(frozen=True, slots=True)
class DirtyRanges:
    """What ``vfio_devices_dma_logging_start`` would send, with its explanation."""

    ranges: tuple[TrackedRange, ...]
    mappings: tuple[Mapping, ...]  # all tracked sections, flat-view order
    skipped: tuple[SkippedSection, ...]
    page_size: int
    qemu_version: QemuVersion
    notes: tuple[str, ...] = ()

    @property
    def num_ranges(self) -> int:
        return len(self.ranges)

    @property
    def spans(self) -> tuple[Span, ...]:
        """``(iova, length)`` in QEMU's order (32, 64, pci64)."""
        return tuple((r.iova, r.length) for r in self.ranges)


def skip_reason(section: FlatSection, version: QemuVersion, page_size: int) -> str | None:
    """Why ``vfio_listener_valid_section`` rejects ``section``, or None if it passes."""
    mask = page_size - 1
    if section.kind not in RAM_KINDS:
        return (f"{section.kind} is not RAM (vfio_listener_skipped_section: "
                "!memory_region_is_ram && !memory_region_is_iommu)")
    if section.start & (1 << 63):
        return "at or above 2^63 (vfio_listener_skipped_section: spurious 64-bit BAR sizing)"
    if section.kind == "rom" and since(version, READONLY_BYPASS):
        return ("read-only section bypassed for dirty tracking "
                f"(QEMU >= {release_text(READONLY_BYPASS)} listener)")
    if section.start & mask != section.offset & mask:
        return ("address and region offset not congruent modulo the host page "
                "(vfio_listener_valid_section: 'received unaligned region')")
    return None


def page_trim(section: FlatSection, page_size: int) -> tuple[int, int] | None:
    """``vfio_get_section_iova_range``: ``REAL_HOST_PAGE_ALIGN(start)`` and the end
    masked down; None when nothing of a whole host page is left."""
    mask = page_size - 1
    iova = (section.start + mask) & ~mask
    llend = (section.end + 1) & ~mask
    if iova >= llend:
        return None
    return iova, llend - 1


def bucket_of(iova: int, end: int, is_vfio_pci: bool, version: QemuVersion) -> Bucket:
    """``vfio_dirty_tracking_update_range``; before 8.2 there were only 32 and 64."""
    if is_vfio_pci and iova >= UINT32_MAX and since(version, PCI64_RANGE):
        return "pci64"
    return "32" if end <= UINT32_MAX else "64"


def predict_ranges(
    sections: Iterable[FlatSection],
    vfio_owners: Collection[str],
    version: QemuVersion,
    page_size: int = 4096,
) -> DirtyRanges:
    """``vfio_dirty_tracking_init`` + ``..._dma_logging_start_create`` for one container.

    ``vfio_owners``: owners (``id`` or QOM path as ``info mtree -o`` prints them) of
    the vfio-pci devices in *this* container (``vfio_section_is_vfio_pci``).
    """
    lows = {"32": UINT32_MAX, "64": UINT64_MAX, "pci64": UINT64_MAX}  # QEMU's initial mins
    highs = dict.fromkeys(BUCKETS, 0)
    members: dict[str, list[Mapping]] = {b: [] for b in BUCKETS}
    mappings: list[Mapping] = []
    skipped: list[SkippedSection] = []
    for section in sections:
        reason = skip_reason(section, version, page_size)
        trimmed = None if reason else page_trim(section, page_size)
        if trimmed is None:
            skipped.append(SkippedSection(section, reason or (
                "smaller than a host page once aligned (vfio_get_section_iova_range)")))
            continue
        iova, end = trimmed
        bucket = bucket_of(iova, end, section.owner in vfio_owners, version)
        lows[bucket] = min(lows[bucket], iova)
        highs[bucket] = max(highs[bucket], end)
        mapping = Mapping(iova, end, section)
        members[bucket].append(mapping)
        mappings.append(mapping)
    ranges = tuple(
        TrackedRange(b, lows[b], highs[b] - lows[b] + 1, tuple(members[b]))
        for b in BUCKETS if highs[b]  # !!maxX
    )
    return DirtyRanges(ranges, tuple(mappings), tuple(skipped), page_size, version,
                       _version_notes(version))


def _version_notes(version: QemuVersion) -> tuple[str, ...]:
    text = ".".join(map(str, version))
    if not since(version, DMA_LOGGING):
        return (f"QEMU {text} has no device DMA logging (8.0+): these ranges are never sent",)
    if not since(version, PCI64_RANGE):
        return (f"QEMU {text}: two buckets only (32/64); the vfio-pci pci64 range is 8.2+",)
    return ()


# --- the kernel: vfio_ioctl_device_feature_logging_start (drivers/vfio/vfio_main.c) ----


@dataclass(frozen=True, slots=True)
class KernelVerdict:
    """Whether VFIO_DEVICE_FEATURE_DMA_LOGGING_START accepts the ranges as such."""

    ok: bool
    errno: str | None  # "EINVAL", "E2BIG", "EOVERFLOW"
    reason: str


def log_max_ranges(page_size: int) -> int:
    """``LOG_MAX_RANGES``: ranges that fit one kernel page (256 with 4 KiB pages)."""
    return page_size // RANGE_STRUCT_SIZE


def check_kernel(spans: Sequence[Span], page_size: int = 4096) -> KernelVerdict:
    """The checks of ``vfio_ioctl_device_feature_logging_start``, in its order."""
    where = "vfio_ioctl_device_feature_logging_start (drivers/vfio/vfio_main.c)"
    if not spans:
        return KernelVerdict(False, "EINVAL", f"{where}: num_ranges == 0 -> -EINVAL "
                             "(QEMU found no RAM section to track)")
    limit = log_max_ranges(page_size)
    if len(spans) > limit:
        return KernelVerdict(False, "E2BIG", f"{where}: {len(spans)} ranges > "
                             f"LOG_MAX_RANGES {limit} (PAGE_SIZE / 16) -> -E2BIG")
    seen: list[tuple[int, int]] = []
    for i, (iova, length) in enumerate(spans):
        if iova % page_size or length % page_size:
            return KernelVerdict(False, "EINVAL", f"{where}: range {i} ({iova:#x}, "
                                 f"{length:#x}) not aligned to page_size {page_size:#x} -> -EINVAL")
        if iova + length > UINT64_MAX:
            return KernelVerdict(False, "EOVERFLOW", f"{where}: range {i} iova + length "
                                 "overflows u64 -> -EOVERFLOW")
        last = iova + length - 1
        clash = next((j for j, (s, e) in enumerate(seen) if s <= last and iova <= e), None)
        if clash is not None:
            return KernelVerdict(False, "EINVAL", f"{where}: range {i} [{iova:#x}-{last:#x}] "
                                 f"overlaps range {clash} -> -EINVAL (QEMU does not guard "
                                 "against 64/pci64 overlap)")
        seen.append((iova, last))
    return KernelVerdict(True, None, f"{where}: {len(spans)} aligned, disjoint range(s) "
                         f"<= LOG_MAX_RANGES {limit}: accepted")


# --- the drivers: mlx5 (drivers/vfio/pci/mlx5/cmd.c), pds (drivers/vfio/pci/pds/dirty.c) -


@dataclass(frozen=True, slots=True)
class Fit:
    """Whether the device can track QEMU's ranges; None when a limit is unknown."""

    fits: bool | None
    reason: str
    kernel: KernelVerdict
    device_spans: tuple[Span, ...]  # what the driver tracks, after its combining
    errno: str | None = None


def check_fit(ranges: DirtyRanges, device: HostDevice | None) -> Fit:
    """Kernel checks, then the bound driver's own limits (``HostDevice`` config)."""
    spans = ranges.spans
    kernel = check_kernel(spans, ranges.page_size)
    if not kernel.ok:
        return Fit(False, kernel.reason, kernel, spans, kernel.errno)
    driver = device.driver.value if device is not None else None
    if driver == "mlx5_vfio_pci" and device is not None:
        return _mlx5_fit(spans, device, kernel)
    if driver == "pds_vfio_pci" and device is not None:
        return _pds_fit(spans, device, kernel, ranges.page_size)
    if driver == "mtty":
        return Fit(True, "mtty_log_start (samples/vfio-mdev/mtty.c) accepts any ranges",
                   kernel, spans)
    what = f"driver {driver}" if driver else "the bound driver (unknown)"
    return Fit(None, f"{kernel.reason}; no range limits known for {what}", kernel, spans)


def _combined(spans: tuple[Span, ...], limit: int, where: str) -> tuple[tuple[Span, ...], str]:
    if len(spans) <= limit:
        return spans, f"{where}: {len(spans)} range(s) <= {limit}"
    combined = kernel_combine(spans, limit)
    return combined, (f"{where}: {len(spans)} ranges > {limit}, vfio_combine_iova_ranges "
                      f"-> {len(combined)}")


def _mlx5_fit(spans: tuple[Span, ...], device: HostDevice, kernel: KernelVerdict) -> Fit:
    where = "mlx5vf_create_tracker (drivers/vfio/pci/mlx5/cmd.c)"
    if device.max_ranges is None and len(spans) > 1:
        return Fit(None, f"{where}: pg_track_max_num_range unknown (configure max_ranges)",
                   kernel, spans)
    limit = device.max_ranges if device.max_ranges is not None else 1
    tracked, story = _combined(spans, limit, where)
    total = covered_bytes(tracked)
    log2 = (total - 1).bit_length()  # ilog2(roundup_pow_of_two(total))
    story += f"; total {total:#x} bytes -> log_addr_space_size {log2}"
    if device.max_log2_address_space is None:
        return Fit(None, f"{story}; pg_track_log_max_addr_space unknown "
                   "(configure max_log2_address_space)", kernel, tracked)
    if log2 > device.max_log2_address_space:
        return Fit(False, f"{story} > pg_track_log_max_addr_space "
                   f"{device.max_log2_address_space} -> -EOPNOTSUPP", kernel, tracked,
                   "EOPNOTSUPP")
    return Fit(True, f"{story} <= pg_track_log_max_addr_space "
               f"{device.max_log2_address_space} (the firmware's minimum is not checked)",
               kernel, tracked)


def _pds_fit(spans: tuple[Span, ...], device: HostDevice, kernel: KernelVerdict,
             page_size: int) -> Fit:
    where = "pds_vfio_dirty_enable (drivers/vfio/pci/pds/dirty.c)"
    if device.max_ranges is None:
        return Fit(None, f"{where}: max_regions unknown (configure max_ranges)", kernel, spans)
    if device.max_ranges == 0:
        return Fit(False, f"{where}: max_regions 0: 'Device doesn't support dirty tracking' "
                   "-> -EOPNOTSUPP", kernel, spans, "EOPNOTSUPP")
    tracked, story = _combined(spans, device.max_ranges, where)
    pages = [-(-length // page_size) for _, length in tracked]
    too_big = [i for i, count in enumerate(pages) if count >= 1 << 32]
    if too_big:
        return Fit(False, f"{story}; region {too_big[0]} has {pages[too_big[0]]} pages, more "
                   "than the u32 page_count holds (truncated; not checked by the driver)",
                   kernel, tracked)
    return Fit(True, f"{story}; every region < 2^32 pages of {page_size:#x}", kernel, tracked)
