"""How much of a VM's RAM the host backs: the QEMU process's guest-RAM mappings (shell).

Stage: shell (host I/O). Reads ``<proc_root>/<pid>/smaps`` (needs the right to read
the process's memory map: the same user, or root) and sums, over the mappings that
are guest RAM, the bytes resident and swapped out. Guest RAM is writable and not
executable (TCG's code buffer is), private anonymous or a shared memfd / hugetlbfs
file; the largest such mappings are taken until they cover the RAM QEMU reported
(its blocks are mapped whole, aligned up to at most ``ALIGN_SLACK``). When they do not
add up to it, the answer is None: no other mapping is guessed at. Never raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from qmpdirty.facts.vm import GuestResidency

log = logging.getLogger(__name__)

#: QEMU maps each RAM block aligned up (to 2 MiB for THP, or the host's huge page);
#: the blocks together may exceed the RAM by this much and still be taken as it.
ALIGN_SLACK = 64 * 2**20
#: Mappings smaller than this are ROMs, video RAM, heaps: never guest RAM blocks of note.
MIN_BLOCK = 16 * 2**20
_SHARED_RAM = ("/memfd:", "/dev/hugepages", "/hugetlbfs", "/dev/shm/")


@dataclass(frozen=True, slots=True)
class Mapping:
    """One mapping of ``smaps``: its size and what of it is resident or swapped."""

    size_bytes: int
    resident_bytes: int
    guest_ram_like: bool


def mappings_from_smaps(text: str) -> list[Mapping]:
    """Every mapping of an ``smaps`` text (pure); fields in kB as the kernel writes them."""
    found: list[Mapping] = []
    like, size, resident = False, 0, 0

    def close() -> None:
        if size:
            found.append(Mapping(size, resident, like))

    for line in text.splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and len(head[1]) == 4:
            close()
            perms, path = head[1], head[5].strip() if len(head) > 5 else ""
            writable, executable = perms[1] == "w", perms[2] == "x"
            anonymous = not path and perms[3] == "p"
            shared_ram = perms[3] == "s" and path.startswith(_SHARED_RAM)
            like, size, resident = writable and not executable and (anonymous or shared_ram), 0, 0
        elif len(head) >= 2 and head[0] in ("Size:", "Rss:", "Swap:") and head[1].isdigit():
            kib = int(head[1]) * 1024
            if head[0] == "Size:":
                size = kib
            else:
                resident += kib
    close()
    return found


def residency_from_smaps(text: str, ram_bytes: int, now: float) -> GuestResidency | None:
    """The guest-RAM mappings of ``text`` (the largest RAM-like ones, until they cover
    ``ram_bytes``) and what of them the host backs; None when they do not add up to it."""
    candidates = sorted((m for m in mappings_from_smaps(text)
                         if m.guest_ram_like and m.size_bytes >= MIN_BLOCK),
                        key=lambda m: m.size_bytes, reverse=True)
    taken: list[Mapping] = []
    for m in candidates:
        if sum(t.size_bytes for t in taken) >= ram_bytes:
            break
        taken.append(m)
    mapped = sum(m.size_bytes for m in taken)
    if not ram_bytes <= mapped <= ram_bytes + ALIGN_SLACK:
        return None
    resident = min(sum(m.resident_bytes for m in taken), ram_bytes)
    return GuestResidency(resident, mapped, now)


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
    return residency_from_smaps(text, ram_bytes, now)
