"""How much of a VM's RAM the host backs, and where: QEMU's guest-RAM mappings (shell).

Stage: shell (host I/O). Reads ``<proc_root>/<pid>/maps`` to find the mappings that are
guest RAM, and ``<proc_root>/<pid>/pagemap`` to see which parts of them the host backs
(both need the right to read the process's memory map: the same user, or
``CAP_SYS_PTRACE``). Guest RAM is writable and not executable (TCG's code buffer is),
private anonymous or a shared memfd / hugetlbfs file; the largest such mappings are taken
until they cover the RAM QEMU reported (its blocks are mapped whole, aligned up to at most
``ALIGN_SLACK``). When they do not add up to it, the answer is None: no other mapping is
guessed at.

``pagemap`` is sampled: the first page of every ``CHUNK`` (2 MiB: a transparent huge page
is all or nothing), or of a larger stride on guests over ``MAX_SAMPLES`` chunks, so that
one reading costs at most that many 8-byte reads per mapping. A page counts as backed
when it is swapped, or present and - in a private mapping - mapped by this process
alone: a read of a page the host never backed maps the shared zero page, which
``pagemap`` shows as present too (``calc-dirty-rate`` reads such pages, and so does a
migration). Never raises.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

from qmpdirty.facts.vm import GuestResidency

log = logging.getLogger(__name__)

#: QEMU maps each RAM block aligned up (to 2 MiB for THP, or the host's huge page);
#: the blocks together may exceed the RAM by this much and still be taken as it.
ALIGN_SLACK = 64 * 2**20
#: Mappings smaller than this are ROMs, video RAM, heaps: never guest RAM blocks of note.
MIN_BLOCK = 16 * 2**20
#: The sampling unit: a transparent huge page, so one entry stands for all of it.
CHUNK = 2 * 2**20
#: At most this many samples per mapping (a 64 GiB block is sampled every 16 MiB).
MAX_SAMPLES = 4096
#: ``pagemap`` has one entry per page of the host (not the guest's 4 KiB page).
PAGE = mmap.PAGESIZE
_SHARED_RAM = ("/memfd:", "/dev/hugepages", "/hugetlbfs", "/dev/shm/")
_PRESENT, _SWAPPED, _EXCLUSIVE = 1 << 63, 1 << 62, 1 << 56


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of ``maps``: where, how large, and whether it can be guest RAM."""

    start: int
    size_bytes: int
    guest_ram_like: bool
    shared: bool = False  # a shared mapping (memfd, hugetlbfs): no zero page in it


#: A writable, non-executable mapping's line in ``maps`` (the only ones that can be guest
#: RAM): start, end, private or shared, and its path (empty when anonymous). One C-level
#: scan of the text: a QEMU's map has hundreds of lines, read for every VM.
_WRITABLE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) rw-([ps]) \S+ \S+ \S+[ \t]*(.*)$", re.M)


def mappings_from_maps(text: str, min_size: int = 1) -> list[Mapping]:
    """The writable, non-executable mappings of a ``maps`` text of at least ``min_size``
    bytes (pure; the header lines of ``smaps`` read alike), each marked whether it can
    be guest RAM."""
    found: list[Mapping] = []
    for m in _WRITABLE.finditer(text):
        start, end = int(m.group(1), 16), int(m.group(2), 16)
        if end - start < min_size:
            continue
        shared, path = m.group(3) == "s", m.group(4).strip()
        like = (not path and not shared) or (shared and path.startswith(_SHARED_RAM))
        found.append(Mapping(start, end - start, like, shared))
    return found


def guest_ram_mappings(text: str, ram_bytes: int) -> list[Mapping] | None:
    """The guest-RAM mappings of a ``maps`` text, largest first (the largest RAM-like
    ones until they cover ``ram_bytes``); None when they do not add up to it."""
    candidates = sorted((m for m in mappings_from_maps(text, MIN_BLOCK) if m.guest_ram_like),
                        key=lambda m: m.size_bytes, reverse=True)
    taken: list[Mapping] = []
    for m in candidates:
        if sum(t.size_bytes for t in taken) >= ram_bytes:
            break
        taken.append(m)
    mapped = sum(m.size_bytes for m in taken)
    return taken if taken and ram_bytes <= mapped <= ram_bytes + ALIGN_SLACK else None


def stride_for(size_bytes: int) -> int:
    """The sampling stride of a mapping: ``CHUNK``, or a multiple of it that keeps the
    samples at ``MAX_SAMPLES``."""
    chunks = -(-size_bytes // CHUNK)
    return CHUNK * max(1, -(-chunks // MAX_SAMPLES))


def resident_map(pagemap_fd: int, mapping: Mapping, stride: int) -> bytes:
    """One byte per ``stride`` of ``mapping``: 1 when that stride's first page is
    swapped (``pagemap`` bit 62), or present (63) and, in a private mapping, exclusively
    mapped (56: the zero page never is). These bits are readable without privileges,
    unlike the frame numbers. Empty when the file cannot be read."""
    backed = _PRESENT if mapping.shared else _PRESENT | _EXCLUSIVE
    chunks = bytearray()
    for offset in range(0, mapping.size_bytes, stride):
        entry = os.pread(pagemap_fd, 8, (mapping.start + offset) // PAGE * 8)
        if len(entry) != 8:
            return b""
        flags = int.from_bytes(entry, "little")
        chunks.append(1 if flags & _SWAPPED or flags & backed == backed else 0)
    return bytes(chunks)


def read_residency(proc_root: Path, pid: int | None, ram_bytes: int | None, now: float
                   ) -> GuestResidency | None:
    """What the host backs of the RAM of QEMU process ``pid``, and where in its largest
    block (None when the pid or RAM is unknown, a file cannot be read, or no mappings add
    up to the RAM)."""
    if pid is None or not ram_bytes or pid <= 0:
        return None
    try:
        taken = guest_ram_mappings((proc_root / str(pid) / "maps").read_text(
            errors="replace"), ram_bytes)
        if taken is None:
            return None
        fd = os.open(proc_root / str(pid) / "pagemap", os.O_RDONLY)
    except OSError as exc:
        log.debug("memory map of pid %d: %s", pid, exc)
        return None
    try:
        maps = [(m, stride_for(m.size_bytes)) for m in taken]
        read = [(m, stride, resident_map(fd, m, stride)) for m, stride in maps]
    except OSError as exc:
        log.debug("pagemap of pid %d: %s", pid, exc)
        return None
    finally:
        os.close(fd)
    if any(not chunks for _, _, chunks in read):
        return None
    backed = sum(min(m.size_bytes, sum(chunks) * stride) for m, stride, chunks in read)
    _, stride, chunks = read[0]
    return GuestResidency(min(backed, ram_bytes), sum(m.size_bytes for m in taken), now,
                          resident_map=chunks, chunk_bytes=stride)
