"""What the host backs of a guest's RAM, and where: read (``host.residency``), judged
(``decisions.migration.residency``), both together (``daemon.residency``).

The texts are in the kernel's ``/proc/<pid>/maps`` format, shaped as a QEMU 10 TCG
process's were on this machine: guest RAM one private anonymous ``rw-p`` mapping of
exactly the RAM, TCG's code buffer ``rwxp``, glibc arenas and ROMs small. ``pagemap``
files are written as the kernel lays them out: one little-endian 64-bit entry per page
of the address space, bit 63 present, 62 swapped, 56 exclusively mapped.
"""

from __future__ import annotations

from pathlib import Path

from qmpdirty.daemon.residency import read_residency
from qmpdirty.decisions.migration.residency import (
    CHUNK,
    Mapping,
    guest_ram_mappings,
    mappings_from_maps,
    resident_map,
    sample_addresses,
    stride_for,
)
from qmpdirty.host.residency import PAGE, read_pagemap

MIB = 2**20
PRESENT, SWAPPED, EXCLUSIVE = 1 << 63, 1 << 62, 1 << 56
BACKED = PRESENT | EXCLUSIVE
PER_CHUNK = CHUNK // PAGE  # host pages


def line(start: int, size_mib: float, perms: str, path: str = "") -> str:
    end = start + int(size_mib * MIB)
    return f"{start:x}-{end:x} {perms} 00000000 00:00 0" + (f"      {path}" if path else " ")


RAM_AT = 0x4000_0000  # guest RAM's address in these texts (1 GiB)
QEMU_512 = "\n".join([
    line(0x1000_0000, 11.7, "r-xp", "/usr/bin/qemu-system-x86_64"),
    line(0x2000_0000, 64, "rw-p"),  # a glibc arena
    line(RAM_AT, 512, "rw-p"),  # guest RAM
    line(0x8000_0000, 1024, "rwxp"),  # TCG's code buffer
    line(0xC000_0000, 16, "rw-p"),  # VGA RAM
]) + "\n"


def test_the_guest_ram_mapping_is_found_among_the_others() -> None:
    taken = guest_ram_mappings(QEMU_512, 512 * MIB)
    assert taken == [Mapping(RAM_AT, 512 * MIB, True)]


def test_tcgs_executable_code_buffer_is_never_guest_ram() -> None:
    """A 1 GiB guest beside TCG's 1 GiB code buffer: only the writable one is RAM."""
    text = line(0x1000_0000, 1024, "rwxp") + "\n" + line(0x8000_0000, 1024, "rw-p")
    assert guest_ram_mappings(text, 1024 * MIB) == [Mapping(0x8000_0000, 1024 * MIB, True)]


def test_ram_in_several_blocks_and_shared_memfd_backends() -> None:
    """Two NUMA nodes' memfd backends (``rw-s /memfd:...``): both taken, largest first."""
    text = "\n".join([line(0x1000_0000, 256, "rw-s", "/memfd:ram-node0 (deleted)"),
                      line(0x3000_0000, 384, "rw-s", "/memfd:ram-node1 (deleted)"),
                      line(0x5000_0000, 64, "rw-p")])
    taken = guest_ram_mappings(text, 640 * MIB)
    assert taken is not None and [(m.size_bytes // MIB, m.shared) for m in taken] == [
        (384, True), (256, True)]


def test_nothing_is_guessed_when_no_mappings_add_up_to_the_ram() -> None:
    assert guest_ram_mappings(QEMU_512, 2048 * MIB) is None  # no 2 GiB mapping
    assert guest_ram_mappings(QEMU_512, 128 * MIB) is None  # 512 MiB is not 128
    assert guest_ram_mappings("", 512 * MIB) is None
    assert mappings_from_maps("garbage\nzz-yy rw-p 0 0 0\n\x00 1-0 rw-p 0 0 0\n") == []


def test_a_stride_keeps_the_samples_bounded() -> None:
    assert stride_for(512 * MIB) == CHUNK
    assert stride_for(8 * 2**30) == CHUNK  # 4096 chunks exactly
    assert stride_for(64 * 2**30) == 8 * CHUNK  # 16 MiB: 4096 samples


def _pagemap(path: Path, entries: dict[int, int], pages: int, base: int = 0) -> None:
    """A sparse file shaped like ``pagemap``: ``entries`` are pages from ``base``."""
    with path.open("wb") as out:
        out.truncate(8 * (base // PAGE + pages))
        for page, flags in entries.items():
            out.seek(8 * (base // PAGE + page))
            out.write(flags.to_bytes(8, "little"))


def test_the_resident_map_skips_the_zero_page(tmp_path: Path) -> None:
    """Per 2 MiB chunk, its first page: present and exclusive (backed), present but
    shared in a private mapping (the zero page a read mapped: not backed), swapped."""
    _pagemap(tmp_path / "pagemap", {0: BACKED, PER_CHUNK: PRESENT, 2 * PER_CHUNK: SWAPPED,
                                    3 * PER_CHUNK + 1: BACKED}, 4 * PER_CHUNK)
    (tmp_path / "1").mkdir()
    (tmp_path / "pagemap").rename(tmp_path / "1" / "pagemap")

    def read(mapping: Mapping) -> bytes:
        entries = read_pagemap(tmp_path, 1, [sample_addresses(mapping)])
        assert entries is not None
        return resident_map(mapping, entries[0])

    private = Mapping(0, 8 * MIB, True)
    assert read(private) == bytes([1, 0, 1, 0])
    shared = Mapping(0, 8 * MIB, True, shared=True)  # memfd: no zero page in it
    assert read(shared) == bytes([1, 1, 1, 0])
    assert read(Mapping(0, 16 * MIB, True)) == bytes([1, 0, 1, 0])  # the file ends there
    assert read_pagemap(tmp_path, 2, [[0]]) is None  # no such process


def test_read_from_a_proc_tree(tmp_path: Path) -> None:
    """The lab guest's shape: backed at both ends of its RAM, nothing between."""
    proc = tmp_path / "4242"
    proc.mkdir()
    (proc / "maps").write_text(QEMU_512)
    backed = {c * PER_CHUNK: BACKED for c in [*range(50), *range(226, 256)]}
    backed[60 * PER_CHUNK] = PRESENT  # the zero page, mapped by a dirty-rate sample
    _pagemap(proc / "pagemap", backed, 256 * PER_CHUNK, base=RAM_AT)
    found = read_residency(tmp_path, 4242, 512 * MIB, 7.0)
    assert found is not None
    assert (found.resident_bytes, found.mapped_bytes, found.at_s) == (160 * MIB, 512 * MIB, 7.0)
    assert found.resident_map == bytes([1] * 50 + [0] * 176 + [1] * 30)
    assert found.chunk_bytes == CHUNK


def test_an_unreadable_or_missing_process_is_unknown(tmp_path: Path) -> None:
    assert read_residency(tmp_path, 4242, 512 * MIB, 0.0) is None  # no such pid
    assert read_residency(tmp_path, None, 512 * MIB, 0.0) is None
    assert read_residency(tmp_path, 4242, None, 0.0) is None
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "maps").write_text(QEMU_512)
    assert read_residency(tmp_path, 7, 512 * MIB, 1.0) is None  # no pagemap
    (tmp_path / "7" / "pagemap").write_bytes(b"")
    assert read_residency(tmp_path, 7, 512 * MIB, 1.0) is None  # a pagemap that ends early
