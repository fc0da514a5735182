"""QEMU's DMA-logging ranges and the fit checks (decisions/ranges.py).

Hand-written flat views cover each rule of ``vfio_dirty_tracking_init``; recorded
QEMU 10.0.2 ``info mtree -f -o`` outputs (tests/data/mtree) check the parser and the
computation on real layouts. Every expected number is derived by hand from the
section lines quoted next to it, never by calling the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmpdirty.decisions.vfio.ranges import (
    DirtyRanges,
    Fit,
    check_fit,
    check_kernel,
    log_max_ranges,
    predict_ranges,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostDevice
from qmpdirty.facts.topology import FlatKind, FlatSection
from qmpdirty.qmp.topology.mtree import flat_view_for, parse_flat_views

MTREE = Path(__file__).resolve().parents[1] / "data" / "mtree"
V10: tuple[int, int, int] = (10, 0, 2)
V81: tuple[int, int, int] = (8, 1, 0)
V82: tuple[int, int, int] = (8, 2, 0)
V11: tuple[int, int, int] = (11, 0, 0)
GIB = 1 << 30
VFIO = "hostdev0"


def sec(start: int, end: int, kind: FlatKind = "ram", name: str = "ram", *,
        offset: int | None = None, owner: str | None = None) -> FlatSection:
    """A flat-view line; the offset defaults to one congruent with ``start``."""
    return FlatSection(start, end, kind, name, start % 4096 if offset is None else offset, owner)


def spans(sections: list[FlatSection], owners: frozenset[str] = frozenset(),
          version: tuple[int, int, int] = V10, page: int = 4096) -> list[tuple[str, int, int]]:
    result = predict_ranges(sections, owners, version, page)
    return [(r.bucket, r.iova, r.length) for r in result.ranges]


LOW_RAM = sec(0, 0x7FFF_FFFF, name="pc.ram")
HIGH_RAM = sec(0x1_0000_0000, 0x1_7FFF_FFFF, name="pc.ram", offset=0x8000_0000)
BIOS = sec(0xFFFC_0000, 0xFFFF_FFFF, "rom", "pc.bios")
BAR_LOW = sec(0xE000_0000, 0xE0FF_FFFF, "ramd", "0000:3b:00.1 BAR 2 mmaps[0]", owner=VFIO)
BAR_HIGH = sec(0x80_0000_0000, 0x80_01FF_FFFF, "ramd", "0000:3b:00.1 BAR 0 mmaps[0]", owner=VFIO)

CASES = {
    "empty view: no range": ([], frozenset(), V10, []),
    "low RAM + BIOS in 32, high RAM in 64": (
        [LOW_RAM, BIOS, HIGH_RAM], frozenset(), V10,
        [("32", 0, 0x1_0000_0000), ("64", 0x1_0000_0000, 0x8000_0000)]),
    "section straddling 4 GiB goes to 64": (
        [sec(0xF000_0000, 0x1_0FFF_FFFF)], frozenset(), V10, [("64", 0xF000_0000, 0x2000_0000)]),
    "section ending at UINT32_MAX stays in 32": (
        [sec(0xF000_0000, 0xFFFF_FFFF)], frozenset(), V10, [("32", 0xF000_0000, 0x1000_0000)]),
    "vfio BAR below 4 GiB: 32 bucket": (
        [LOW_RAM, BAR_LOW], frozenset({VFIO}), V10, [("32", 0, 0xE100_0000)]),
    "vfio BAR above 4 GiB: pci64 bucket, after 64": (
        [BAR_HIGH, LOW_RAM, HIGH_RAM], frozenset({VFIO}), V10,
        [("32", 0, 0x8000_0000), ("64", 0x1_0000_0000, 0x8000_0000),
         ("pci64", 0x80_0000_0000, 0x200_0000)]),
    "vfio BAR exactly at 4 GiB (iova >= UINT32_MAX): pci64": (
        [sec(0x1_0000_0000, 0x1_0000_FFFF, "ramd", owner=VFIO)], frozenset({VFIO}), V10,
        [("pci64", 0x1_0000_0000, 0x1_0000)]),
    "vfio BAR straddling 4 GiB: iova < UINT32_MAX, so 64": (
        [sec(0xFFFF_0000, 0x1_0000_FFFF, "ramd", owner=VFIO)], frozenset({VFIO}), V10,
        [("64", 0xFFFF_0000, 0x2_0000)]),
    "BAR of a vfio device in another container: by address": (
        [BAR_HIGH], frozenset({"other"}), V10, [("64", 0x80_0000_0000, 0x200_0000)]),
    "before 8.2 there is no pci64: vfio BAR in 64": (
        [LOW_RAM, HIGH_RAM, BAR_HIGH], frozenset({VFIO}), V81,
        [("32", 0, 0x8000_0000), ("64", 0x1_0000_0000, 0x80_0200_0000 - 0x1_0000_0000)]),
    "8.2 is the first with pci64": (
        [BAR_HIGH], frozenset({VFIO}), V82, [("pci64", 0x80_0000_0000, 0x200_0000)]),
    "rom counted up to 10.2": ([BIOS], frozenset(), (10, 2, 2), [("32", 0xFFFC_0000, 0x4_0000)]),
    "11.0 drops read-only (rom) sections": (
        [LOW_RAM, BIOS, HIGH_RAM], frozenset(), V11,
        [("32", 0, 0x8000_0000), ("64", 0x1_0000_0000, 0x8000_0000)]),
    "romd and i/o never count": (
        [sec(0xFFC0_0000, 0xFFFF_FFFF, "romd", "system.flash0"),
         sec(0xFEC0_0000, 0xFEC0_0FFF, "i/o", "ioapic")], frozenset(), V10, []),
    "misaligned section (address vs region offset) skipped": (
        [sec(0x10_0800, 0x20_07FF, offset=0)], frozenset(), V10, []),
    "congruent but unaligned section: start rounded up, end masked": (
        [sec(0x10_0800, 0x20_07FF, offset=0x800)], frozenset(), V10,
        [("32", 0x10_1000, 0xF_F000)]),
    "less than a host page once aligned: skipped": (
        [sec(0x1000, 0x17FF)], frozenset(), V10, []),
    "at or above 2^63: skipped": ([sec(1 << 63, (1 << 63) + 0xFFFF)], frozenset(), V10, []),
    "non-volatile RAM counts": (
        [FlatSection(0x1_0000_0000, 0x1_0FFF_FFFF, "ram", "nvdimm", 0, None, True)],
        frozenset(), V10, [("64", 0x1_0000_0000, 0x1000_0000)]),
    "virtio-mem: the whole device region, plugged or not": (
        [LOW_RAM, sec(0x1_4000_0000, 0x1_7FFF_FFFF, name="vmem0", owner="/objects/vmem0")],
        frozenset(), V10, [("32", 0, 0x8000_0000), ("64", 0x1_4000_0000, 0x4000_0000)]),
    "emulated RAM BAR above a high vfio BAR: 64 and pci64 overlap": (
        [HIGH_RAM, BAR_HIGH, sec(0x100_0000_0000, 0x100_0FFF_FFFF, name="ivshmem")],
        frozenset({VFIO}), V10,
        [("64", 0x1_0000_0000, 0x100_1000_0000 - 0x1_0000_0000),
         ("pci64", 0x80_0000_0000, 0x200_0000)]),
}


@pytest.mark.parametrize(("sections", "owners", "version", "expected"), CASES.values(),
                         ids=CASES.keys())
def test_qemu_ranges(sections: list[FlatSection], owners: frozenset[str],
                     version: tuple[int, int, int], expected: list[tuple[str, int, int]]) -> None:
    assert spans(sections, owners, version) == expected


def test_64k_host_pages_align_to_64k() -> None:
    # [0x10000, 0x2ffff] survives; [0x31000, 0x4ffff] rounds to [0x40000, 0x4ffff].
    sections = [sec(0x1_0000, 0x2_FFFF), sec(0x3_1000, 0x4_FFFF, offset=0x1000)]
    assert spans(sections, page=0x1_0000) == [("32", 0x1_0000, 0x4_0000)]
    assert spans([sec(0x3_1000, 0x4_FFFF, offset=0)], page=0x1_0000) == []  # 4K ok, 64K not


def test_explanation_names_buckets_sections_and_skips() -> None:
    ioapic = sec(0xFEC0_0000, 0xFEC0_0FFF, "i/o", "ioapic")
    result = predict_ranges([LOW_RAM, ioapic, BIOS, BAR_HIGH], {VFIO}, V10)
    assert result.num_ranges == 2 and result.spans == (
        (0, 0x1_0000_0000), (0x80_0000_0000, 0x200_0000))
    assert [m.section.name for m in result.ranges[0].sections] == ["pc.ram", "pc.bios"]
    assert [m.section for m in result.ranges[1].sections] == [BAR_HIGH]
    assert [m.section.name for m in result.mappings] == ["pc.ram", "pc.bios", BAR_HIGH.name]
    assert [(s.section.name, "vfio_listener_skipped_section" in s.reason)
            for s in result.skipped] == [("ioapic", True)]


@pytest.mark.parametrize(("section", "words"), [
    (sec(0x10_0800, 0x20_07FF, offset=0), "unaligned region"),
    (sec(0x1000, 0x17FF), "vfio_get_section_iova_range"),
    (sec(1 << 63, (1 << 63) + 0xFFF), "2^63"),
    (BIOS, "read-only"),
])
def test_skip_reasons_cite_the_rule(section: FlatSection, words: str) -> None:
    (skipped,) = predict_ranges([section], (), V11).skipped
    assert words in skipped.reason


def test_old_versions_say_what_differs() -> None:
    assert "8.2" in predict_ranges([], (), V81).notes[0]
    assert "no device DMA logging" in predict_ranges([], (), (7, 2, 0)).notes[0]
    assert predict_ranges([], (), V10).notes == ()


@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(1, 2**33), st.booleans(),
                          st.sampled_from(["ram", "ramd", "rom", "romd", "i/o"])), max_size=30))
def test_every_tracked_section_lies_in_its_page_aligned_bucket(
    raw: list[tuple[int, int, bool, FlatKind]],
) -> None:
    sections = [sec(s, s + n - 1, kind, owner=VFIO if mine else None)
                for s, n, mine, kind in raw]
    result = predict_ranges(sections, {VFIO}, V10)
    assert 0 <= result.num_ranges <= 3
    assert [r.bucket for r in result.ranges] == sorted(
        (r.bucket for r in result.ranges), key=["32", "64", "pci64"].index)
    for r in result.ranges:
        assert r.iova % 4096 == 0 and r.length % 4096 == 0
        for m in r.sections:
            assert r.iova <= m.iova <= m.end <= r.end
            assert m.section.start <= m.iova and m.end <= m.section.end
    assert len(result.mappings) + len(result.skipped) == len(sections)


# --- recorded QEMU 10.0.2 outputs ----------------------------------------------------


def recorded(name: str) -> tuple[FlatSection, ...]:
    sections = flat_view_for((MTREE / name).read_text())
    assert sections is not None
    return sections


def test_parser_reads_the_recorded_q35_view() -> None:
    views = parse_flat_views((MTREE / "q35-vga-ivshmem.txt").read_text())
    (memory,) = [v for v in views if "memory" in v.address_spaces]
    assert memory.address_spaces == ("memory", "cpu-memory-0", "ich9-ahci")
    assert len(memory.sections) == 26
    by_start = {s.start: s for s in memory.sections}
    # 00000000000c0000-00000000000c9fff (prio 0, rom): pc.ram @00000000000c0000 owner:{obj ...
    assert by_start[0xC0000] == FlatSection(0xC0000, 0xC9FFF, "rom", "pc.ram", 0xC0000,
                                            "/objects/pc.ram")
    # 00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram owner:{dev id=vga0}
    assert by_start[0xFD00_0000] == FlatSection(0xFD00_0000, 0xFDFF_FFFF, "ram", "vga.vram",
                                                0, "vga0")
    # 00000000febf0500-00000000febf0515 (prio 0, i/o): bochs dispi interface owner:{dev id=vga0}
    assert by_start[0xFEBF_0500].name == "bochs dispi interface"
    assert by_start[0xFEBF_0180].offset == 0x180  # vga.mmio @0000000000000180
    # 00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios parent:{obj path=...}
    assert by_start[0xFFFC_0000].owner is None  # parent only: not the MR's owner
    assert by_start[0xFF_0000_0000].owner == "/objects/shmbig"


RECORDED = {
    # pc.ram 0-bffff, pc.rom c0000-dffff, pc.bios e0000-fffff, pc.ram 100000-3fffffff,
    # pc.bios fffc0000-ffffffff -> 32 [0, ffffffff]; pc.ram 100000000-13fffffff -> 64.
    "q35 high RAM, 10.0": ("q35-highram.txt", (), V10,
                           [("32", 0, 4 * GIB), ("64", 4 * GIB, GIB)]),
    # without the rom sections the 32-bit range ends with pc.ram at 3fffffff.
    "q35 high RAM, 11.0": ("q35-highram.txt", (), V11, [("32", 0, GIB), ("64", 4 * GIB, GIB)]),
    # pc.ram 100000-bfffffff below, pc.ram 100000000-11fffffff above.
    "pc 3.5 GiB": ("pc-3584.txt", (), V10, [("32", 0, 4 * GIB), ("64", 4 * GIB, GIB // 2)]),
    # pc.ram 100000000-13fffffff and vmem0 140000000-17fffffff (requested-size=0).
    "virtio-mem": ("q35-virtio-mem.txt", (), V10, [("32", 0, 4 * GIB), ("64", 4 * GIB, 2 * GIB)]),
    # shmbig ff00000000-ff7fffffff is a 64-bit RAM BAR -> 64.
    "VGA + ivshmem": ("q35-vga-ivshmem.txt", (), V10,
                      [("32", 0, 4 * GIB), ("64", 0xFF_0000_0000, 2 * GIB)]),
    # vga.vram (fd000000, owner vga0) is below 4 GiB: 32 even as a "vfio" owner.
    "VGA as the vfio owner": ("q35-vga-ivshmem.txt", ("vga0",), V10,
                              [("32", 0, 4 * GIB), ("64", 0xFF_0000_0000, 2 * GIB)]),
    # the memory backend owns ivshmem's BAR MR; standing in for a vfio BAR: pci64.
    "shmbig as the vfio owner": ("q35-vga-ivshmem.txt", ("/objects/shmbig",), V10,
                                 [("32", 0, 4 * GIB), ("pci64", 0xFF_0000_0000, 2 * GIB)]),
    "shmbig as the vfio owner, 8.1": ("q35-vga-ivshmem.txt", ("/objects/shmbig",), V81,
                                      [("32", 0, 4 * GIB), ("64", 0xFF_0000_0000, 2 * GIB)]),
    # 11.0, RAM only: pc.ram 0-9ffff, ca000-ccfff, e4000-effff, 100000-3fffffff and
    # vga.vram fd000000-fdffffff -> 32 [0, fdffffff].
    "VGA + ivshmem, 11.0": ("q35-vga-ivshmem.txt", (), V11,
                            [("32", 0, 0xFE00_0000), ("64", 0xFF_0000_0000, 2 * GIB)]),
}


@pytest.mark.parametrize(("name", "owners", "version", "expected"), RECORDED.values(),
                         ids=RECORDED.keys())
def test_recorded_layouts(name: str, owners: tuple[str, ...], version: tuple[int, int, int],
                          expected: list[tuple[str, int, int]]) -> None:
    assert spans(list(recorded(name)), frozenset(owners), version) == expected


def test_recorded_skips_are_the_io_sections() -> None:
    result = predict_ranges(recorded("q35-highram.txt"), (), V10)
    assert sorted(s.section.name for s in result.skipped) == ["apic-msi", "hpet", "ioapic"]
    assert len(result.mappings) == 6


# --- the kernel ------------------------------------------------------------------------


@pytest.mark.parametrize(("spans_", "errno", "words"), [
    ([], "EINVAL", "num_ranges == 0"),
    ([(i * 0x2000, 0x1000) for i in range(257)], "E2BIG", "LOG_MAX_RANGES 256"),
    ([(0x800, 0x1000)], "EINVAL", "not aligned"),
    ([(0, 0x1800)], "EINVAL", "not aligned"),
    ([(0xFFFF_FFFF_FFFF_F000, 0x2000)], "EOVERFLOW", "overflows"),
    ([(0, 0x10_0000), (0x8_0000, 0x1000)], "EINVAL", "overlaps range 0"),
])
def test_kernel_refusals(spans_: list[tuple[int, int]], errno: str, words: str) -> None:
    verdict = check_kernel(spans_)
    assert (verdict.ok, verdict.errno) == (False, errno)
    assert words in verdict.reason and "vfio_ioctl_device_feature_logging_start" in verdict.reason


def test_kernel_accepts_one_page_of_ranges() -> None:
    assert check_kernel([(i * 0x2000, 0x1000) for i in range(256)]).ok
    assert log_max_ranges(4096) == 256 and log_max_ranges(65536) == 4096
    assert check_kernel([(i * 0x2_0000, 0x1_0000) for i in range(257)], 65536).ok


def test_overlapping_64_and_pci64_are_refused() -> None:
    case = CASES["emulated RAM BAR above a high vfio BAR: 64 and pci64 overlap"]
    result = predict_ranges(case[0], case[1], V10)
    assert check_kernel(result.spans).errno == "EINVAL"
    assert check_fit(result, device("mtty", None, None)).fits is False


# --- the drivers ------------------------------------------------------------------------


def device(driver: str | None, max_ranges: int | None, max_log2: int | None) -> HostDevice:
    def known(value: bool) -> Fact[bool]:
        return Fact(value, "test")

    return HostDevice(
        bdf="0000:3b:00.1", driver=Fact(driver, "test"), migration=known(True),
        p2p=known(True), pre_copy=known(True), dma_logging=known(True),
        iommu_unit=Fact("dmar0", "test"), iommu_dirty_tracking=known(False),
        max_ranges=max_ranges, max_log2_address_space=max_log2,
    )


def qemu_three() -> DirtyRanges:
    # 32 [0, 2 GiB), 64 [4 GiB, 6 GiB), pci64 [512 GiB, +32 MiB)
    return predict_ranges([LOW_RAM, HIGH_RAM, BAR_HIGH], {VFIO}, V10)


def fit(driver: str | None, max_ranges: int | None, max_log2: int | None) -> Fit:
    return check_fit(qemu_three(), device(driver, max_ranges, max_log2))


def test_mlx5_combines_then_checks_the_address_space() -> None:
    # gaps: 32->64 is 2 GiB, 64->pci64 is ~506 GiB: the first pair merges to [0, 6 GiB).
    result = fit("mlx5_vfio_pci", 2, 33)
    assert result.device_spans == ((0, 6 * GIB), (0x80_0000_0000, 0x200_0000))
    # 6 GiB + 32 MiB -> roundup 8 GiB -> log2 33
    assert result.fits is True and "log_addr_space_size 33" in result.reason
    too_small = fit("mlx5_vfio_pci", 2, 32)
    assert (too_small.fits, too_small.errno) == (False, "EOPNOTSUPP")
    assert "mlx5vf_create_tracker" in too_small.reason


def test_mlx5_with_one_range_tracks_the_whole_span() -> None:
    result = fit("mlx5_vfio_pci", 1, 42)
    assert result.device_spans == ((0, 0x80_0200_0000),)  # 512 GiB + 32 MiB -> log2 40
    assert result.fits is True and "log_addr_space_size 40" in result.reason
    assert fit("mlx5_vfio_pci", 1, 39).fits is False


def test_mlx5_without_enough_ranges_no_combining() -> None:
    result = fit("mlx5_vfio_pci", 4, 33)
    assert result.device_spans == qemu_three().spans  # 2 + 2 GiB + 32 MiB -> log2 33
    assert result.fits is True


@pytest.mark.parametrize(("max_ranges", "max_log2"), [(None, 42), (4, None)])
def test_mlx5_unknown_limits_give_none(max_ranges: int | None, max_log2: int | None) -> None:
    result = fit("mlx5_vfio_pci", max_ranges, max_log2)
    assert result.fits is None and "unknown" in result.reason


def test_pds_limits() -> None:
    assert fit("pds_vfio_pci", None, None).fits is None
    zero = fit("pds_vfio_pci", 0, None)
    assert (zero.fits, zero.errno) == (False, "EOPNOTSUPP")
    assert "Device doesn't support dirty tracking" in zero.reason
    two = fit("pds_vfio_pci", 2, None)
    assert two.fits is True and two.device_spans == ((0, 6 * GIB), (0x80_0000_0000, 0x200_0000))
    assert "pds_vfio_dirty_enable" in two.reason


def test_pds_region_of_2_to_the_32_pages_does_not_fit() -> None:
    # 16 TiB = 2^32 pages of 4 KiB: the u32 page_count cannot hold it.
    huge = predict_ranges([sec(0, (1 << 44) - 1)], (), V10)
    assert check_fit(huge, device("pds_vfio_pci", 8, None)).fits is False
    fits = predict_ranges([sec(0, (1 << 44) - 4096 - 1)], (), V10)
    assert check_fit(fits, device("pds_vfio_pci", 8, None)).fits is True


def test_unknown_or_absent_driver_gives_none_and_kernel_failure_false() -> None:
    assert fit("vfio-pci", 4, 42).fits is None
    assert check_fit(qemu_three(), None).fits is None
    empty = check_fit(predict_ranges([], (), V10), device("mlx5_vfio_pci", 4, 42))
    assert (empty.fits, empty.errno) == (False, "EINVAL")
    assert fit("mtty", None, None).fits is True
