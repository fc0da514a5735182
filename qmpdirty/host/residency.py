"""How much of a VM's RAM the host backs: the QEMU process's guest-RAM mappings (shell).

Stage: shell (host I/O). Reads ``<proc_root>/<pid>/smaps`` (needs the right to read
the process's memory map: the same user, or root) and sums, over the mappings that
are guest RAM, the bytes resident and swapped out. Guest RAM is writable and not
executable (TCG's code buffer is), private anonymous or a shared memfd / hugetlbfs
file; the largest such mappings are taken until they cover the RAM QEMU reported
(its blocks are mapped whole, aligned up to at most ``ALIGN_SLACK``). When they do not
add up to it, the answer is None: no other mapping is guessed at. Where in the largest
of them the host backs memory is read from ``<proc_root>/<pid>/pagemap``, one entry per
2 MiB chunk (``CHUNK``): the first page of each, swapped, or present and (in a private
mapping) mapped by this process alone - a read of a page the host never backed maps
the shared zero page, which ``pagemap`` shows as present too (``calc-dirty-rate`` reads
such pages, and so does a migration). Never raises.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from qmpdirty.facts.vm import GuestResidency

log = logging.getLogger(__name__)

#: QEMU maps each RAM block aligned up (to 2 MiB for THP, or the host's huge page);
#: the blocks together may exceed the RAM by this much and still be taken as it.
ALIGN_SLACK = 64 * 2**20
#: Mappings smaller than this are ROMs, video RAM, heaps: never guest RAM blocks of note.
MIN_BLOCK = 16 * 2**20
_SHARED_RAM = ("/memfd:", "/dev/hugepages", "/hugetlbfs", "/dev/shm/")
#: The resident map's unit: a transparent huge page, so one entry stands for all of it.
CHUNK = 2 * 2**20
PAGE = 4096
_PRESENT, _SWAPPED, _EXCLUSIVE = 1 << 63, 1 << 62, 1 << 56


@dataclass(frozen=True, slots=True)
class Mapping:
    """One mapping of ``smaps``: its size and what of it is resident or swapped."""

    size_bytes: int
    resident_bytes: int
    guest_ram_like: bool
    start: int = 0  # its address in the process
    shared: bool = False  # a shared mapping (memfd, hugetlbfs): no zero page in it


def mappings_from_smaps(text: str) -> list[Mapping]:
    """Every mapping of an ``smaps`` text (pure); fields in kB as the kernel writes them."""
    found: list[Mapping] = []
    like, size, resident, start, shared = False, 0, 0, 0, False

    def close() -> None:
        if size:
            found.append(Mapping(size, resident, like, start, shared))

    for line in text.splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and len(head[1]) == 4:
            close()
            perms, path = head[1], head[5].strip() if len(head) > 5 else ""
            writable, executable = perms[1] == "w", perms[2] == "x"
            anonymous = not path and perms[3] == "p"
            shared_ram = perms[3] == "s" and path.startswith(_SHARED_RAM)
            like, size, resident = writable and not executable and (anonymous or shared_ram), 0, 0
            shared = perms[3] == "s"
            start = int(head[0].split("-", 1)[0], 16) if _is_hex(head[0].split("-", 1)[0]) \
                else 0
        elif len(head) >= 2 and head[0] in ("Size:", "Rss:", "Swap:") and head[1].isdigit():
            kib = int(head[1]) * 1024
            if head[0] == "Size:":
                size = kib
            else:
                resident += kib
    close()
    return found


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)


def guest_ram_mappings(text: str, ram_bytes: int) -> list[Mapping] | None:
    """The guest-RAM mappings of an ``smaps`` text, largest first (the largest RAM-like
    ones until they cover ``ram_bytes``); None when they do not add up to it."""
    candidates = sorted((m for m in mappings_from_smaps(text)
                         if m.guest_ram_like and m.size_bytes >= MIN_BLOCK),
                        key=lambda m: m.size_bytes, reverse=True)
    taken: list[Mapping] = []
    for m in candidates:
        if sum(t.size_bytes for t in taken) >= ram_bytes:
            break
        taken.append(m)
    mapped = sum(m.size_bytes for m in taken)
    return taken if ram_bytes <= mapped <= ram_bytes + ALIGN_SLACK else None


def residency_from_smaps(text: str, ram_bytes: int, now: float) -> GuestResidency | None:
    """What the host backs of the guest-RAM mappings of ``text`` (no resident map)."""
    taken = guest_ram_mappings(text, ram_bytes)
    if taken is None:
        return None
    resident = min(sum(m.resident_bytes for m in taken), ram_bytes)
    return GuestResidency(resident, sum(m.size_bytes for m in taken), now)


def resident_map(pagemap_fd: int, mapping: Mapping) -> bytes:
    """One byte per ``CHUNK`` of ``mapping``: 1 when the chunk's first page is swapped
    (``pagemap`` bit 62), or present (63) and, in a private mapping, exclusively mapped
    (56: the zero page never is). These bits are readable without privileges, unlike
    the frame numbers. Empty when the file cannot be read."""
    backed = _PRESENT if mapping.shared else _PRESENT | _EXCLUSIVE
    chunks = bytearray()
    for offset in range(0, mapping.size_bytes, CHUNK):
        entry = os.pread(pagemap_fd, 8, (mapping.start + offset) // PAGE * 8)
        if len(entry) != 8:
            return b""
        flags = int.from_bytes(entry, "little")
        chunks.append(1 if flags & _SWAPPED or flags & backed == backed else 0)
    return bytes(chunks)


def read_residency(proc_root: Path, pid: int | None, ram_bytes: int | None, now: float
                   ) -> GuestResidency | None:
    """What the host backs of the RAM of QEMU process ``pid`` (None when the pid or RAM
    is unknown, the file cannot be read, or no mappings add up to the RAM)."""
    if pid is None or not ram_bytes or pid <= 0:
        return None
    try:
        text = (proc_root / str(pid) / "smaps").read_text(errors="replace")
    except OSError as exc:
        log.debug("smaps of pid %d: %s", pid, exc)
        return None
    found = residency_from_smaps(text, ram_bytes, now)
    taken = guest_ram_mappings(text, ram_bytes)
    if found is None or not taken or not taken[0].start:
        return found
    try:
        fd = os.open(proc_root / str(pid) / "pagemap", os.O_RDONLY)
    except OSError as exc:
        log.debug("pagemap of pid %d: %s", pid, exc)
        return found
    try:
        chunks = resident_map(fd, taken[0])
    except OSError as exc:
        log.debug("pagemap of pid %d: %s", pid, exc)
        return found
    finally:
        os.close(fd)
    return replace(found, resident_map=chunks, chunk_bytes=CHUNK if chunks else 0)
