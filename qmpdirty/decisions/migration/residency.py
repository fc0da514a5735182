"""Which of a QEMU's mappings are guest RAM, where to sample them, and what the samples
say the host backs (pure core).

Stage: decisions (the forecast's first pass reads the result). ``host.residency`` reads
``/proc/<pid>/maps`` and the ``pagemap`` entries at the addresses this module names;
this module decides. Guest RAM is writable and not executable (TCG's code buffer is),
private anonymous or a shared memfd / hugetlbfs file; the largest such mappings are
taken until they cover the RAM QEMU reported (its blocks are mapped whole, aligned up to
at most ``ALIGN_SLACK``). When they do not add up to it, the answer is None: no other
mapping is guessed at.

Sampling: the first page of every ``CHUNK`` (2 MiB: a transparent huge page is all or
nothing), or of a larger stride on guests over ``MAX_SAMPLES`` chunks. A sample counts
as backed when it is swapped, or present and - in a private mapping - mapped by this
process alone: a read of a page the host never backed maps the shared zero page, which
``pagemap`` shows as present too (``calc-dirty-rate`` reads such pages, and so does a
migration); the kernel's Documentation/admin-guide/mm/pagemap.rst gives the bits.
Must not read files or know where they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qmpdirty.facts.vm import GuestResidency

#: QEMU maps each RAM block aligned up (to 2 MiB for THP, or the host's huge page);
#: the blocks together may exceed the RAM by this much and still be taken as it.
ALIGN_SLACK = 64 * 2**20
#: Mappings smaller than this are ROMs, video RAM, heaps: never guest RAM blocks of note.
MIN_BLOCK = 16 * 2**20
#: The sampling unit: a transparent huge page, so one entry stands for all of it.
CHUNK = 2 * 2**20
#: At most this many samples per mapping (a 64 GiB block is sampled every 16 MiB).
MAX_SAMPLES = 4096
_SHARED_RAM = ("/memfd:", "/dev/hugepages", "/hugetlbfs", "/dev/shm/")
PRESENT, SWAPPED, EXCLUSIVE = 1 << 63, 1 << 62, 1 << 56


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
    bytes (the header lines of ``smaps`` read alike), each marked whether it can be
    guest RAM."""
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


def sample_addresses(mapping: Mapping) -> range:
    """The addresses whose ``pagemap`` entries are read: each stride's first byte."""
    return range(mapping.start, mapping.start + mapping.size_bytes,
                 stride_for(mapping.size_bytes))


def resident_map(mapping: Mapping, entries: Sequence[int]) -> bytes:
    """One byte per stride of ``mapping``, from the ``pagemap`` entries of its
    ``sample_addresses``: 1 when swapped (bit 62), or present (63) and, in a private
    mapping, exclusively mapped (56: the zero page never is). These bits are readable
    without privileges, unlike the frame numbers."""
    backed = PRESENT if mapping.shared else PRESENT | EXCLUSIVE
    return bytes(1 if e & SWAPPED or e & backed == backed else 0 for e in entries)


def residency_from(taken: Sequence[Mapping], entries: Sequence[Sequence[int]],
                   ram_bytes: int, now: float) -> GuestResidency | None:
    """What the host backs of the RAM, and where in its largest block, from the
    entries read at each mapping's ``sample_addresses`` (None when a mapping's entries
    are missing: its ``pagemap`` ended early or could not be read)."""
    if not taken or len(entries) != len(taken) or any(
            len(e) != len(sample_addresses(m)) for m, e in zip(taken, entries, strict=True)):
        return None
    maps = [(m, stride_for(m.size_bytes), resident_map(m, e))
            for m, e in zip(taken, entries, strict=True)]
    backed = sum(min(m.size_bytes, sum(chunks) * stride) for m, stride, chunks in maps)
    _, stride, chunks = maps[0]
    return GuestResidency(min(backed, ram_bytes), sum(m.size_bytes for m in taken), now,
                          resident_map=chunks, chunk_bytes=stride)
