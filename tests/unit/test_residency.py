"""What the host backs of a guest's RAM, from ``smaps`` (``host.residency``).

The texts are in the kernel's ``/proc/<pid>/smaps`` format, shaped as a QEMU 10 TCG
process's were on this machine: guest RAM one private anonymous ``rw-p`` mapping of
exactly the RAM, TCG's code buffer ``rwxp``, glibc arenas and ROMs small.
"""

from __future__ import annotations

from pathlib import Path

from qmpdirty.host.residency import mappings_from_smaps, read_residency, residency_from_smaps

MIB = 2**20


def vma(start: int, size_kib: int, perms: str, path: str = "", *, rss_kib: int = 0,
        swap_kib: int = 0) -> str:
    end = start + size_kib * 1024
    head = f"{start:x}-{end:x} {perms} 00000000 00:00 0"
    head += f"                          {path}" if path else " "
    return "\n".join([head, f"Size:           {size_kib:8d} kB",
                      "KernelPageSize:        4 kB", "MMUPageSize:           4 kB",
                      f"Rss:            {rss_kib:8d} kB", "Pss:                 0 kB",
                      f"AnonHugePages:  {rss_kib:8d} kB", f"Swap:           {swap_kib:8d} kB",
                      "SwapPss:               0 kB", "Locked:                0 kB",
                      "THPeligible:    1", "VmFlags: rd wr mr mw me ac sd hg"]) + "\n"


QEMU_512 = (vma(0x55d0_0000_0000, 12_000, "r-xp", "/usr/bin/qemu-system-x86_64", rss_kib=9_000)
            + vma(0x7f02_7000_0000, 65_536, "rw-p", "", rss_kib=2_048)  # a glibc arena
            + vma(0x7f02_73e0_0000, 524_288, "rw-p", "", rss_kib=157_696,
                  swap_kib=1_024)  # guest RAM
            + vma(0x7f02_9c00_0000, 1_048_572, "rwxp", "", rss_kib=47_104)  # TCG code buffer
            + vma(0x7f02_e000_0000, 16_384, "rw-p", "", rss_kib=16_384))  # VGA RAM


def test_the_guest_ram_mapping_is_found_and_its_backing_summed() -> None:
    found = residency_from_smaps(QEMU_512, 512 * MIB, 10.0)
    assert found is not None
    assert (found.resident_bytes, found.mapped_bytes) == ((157_696 + 1_024) * 1024, 512 * MIB)
    assert found.at_s == 10.0


def test_tcgs_executable_code_buffer_is_never_guest_ram() -> None:
    """A 1 GiB guest beside TCG's 1 GiB code buffer: only the writable one is RAM."""
    text = (vma(0x7f00_0000_0000, 1_048_572, "rwxp", "", rss_kib=900_000)
            + vma(0x7f10_0000_0000, 1_048_576, "rw-p", "", rss_kib=300_000))
    found = residency_from_smaps(text, 1024 * MIB, 0.0)
    assert found is not None and found.resident_bytes == 300_000 * 1024


def test_ram_in_several_blocks_and_shared_memfd_backends() -> None:
    """Two NUMA nodes' memfd backends (``rw-s /memfd:...``): both taken."""
    text = (vma(0x7f00_0000_0000, 262_144, "rw-s", "/memfd:ram-node0 (deleted)", rss_kib=1_000)
            + vma(0x7f10_0000_0000, 262_144, "rw-s", "/memfd:ram-node1 (deleted)", rss_kib=2_000)
            + vma(0x7f20_0000_0000, 65_536, "rw-p", "", rss_kib=60_000))
    found = residency_from_smaps(text, 512 * MIB, 0.0)
    assert found is not None and found.resident_bytes == 3_000 * 1024


def test_nothing_is_guessed_when_no_mappings_add_up_to_the_ram() -> None:
    assert residency_from_smaps(QEMU_512, 2048 * MIB, 0.0) is None  # no 2 GiB mapping
    assert residency_from_smaps(QEMU_512, 128 * MIB, 0.0) is None  # 512 MiB is not 128
    assert residency_from_smaps("", 512 * MIB, 0.0) is None
    assert residency_from_smaps("garbage\nSize: x kB\n\x00", 512 * MIB, 0.0) is None


def test_mappings_keep_file_backed_and_executable_ones_apart() -> None:
    kinds = [(m.size_bytes // 1024, m.guest_ram_like) for m in mappings_from_smaps(QEMU_512)]
    assert kinds == [(12_000, False), (65_536, True), (524_288, True), (1_048_572, False),
                     (16_384, True)]


def test_an_unreadable_or_missing_process_is_unknown(tmp_path: Path) -> None:
    assert read_residency(tmp_path, 4242, 512 * MIB, 0.0) is None  # no such pid
    assert read_residency(tmp_path, None, 512 * MIB, 0.0) is None
    assert read_residency(tmp_path, 4242, None, 0.0) is None
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "smaps").write_text(QEMU_512)
    found = read_residency(tmp_path, 7, 512 * MIB, 1.0)
    assert found is not None and found.mapped_bytes == 512 * MIB
