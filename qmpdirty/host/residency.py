"""A QEMU process's memory map and ``pagemap`` entries, read as they are (shell).

Stage: shell (host I/O). ``read_maps`` reads ``<proc_root>/<pid>/maps``; ``read_pagemap``
reads the 64-bit ``<proc_root>/<pid>/pagemap`` entries of given addresses (one per host
page, so the host's page size, not the guest's 4 KiB, turns an address into an offset).
Both need the right to read the process's memory map: the same user, or
``CAP_SYS_PTRACE``. Which mappings are guest RAM, which addresses to sample and what the
entries mean is ``decisions.migration.residency``'s. Must not interpret what it reads.
Never raises: what cannot be read is None.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: ``pagemap`` has one entry per page of the host (not the guest's 4 KiB page).
PAGE = mmap.PAGESIZE


def read_maps(proc_root: Path, pid: int) -> str | None:
    """The text of the process's ``maps``; None when it cannot be read."""
    try:
        return (proc_root / str(pid) / "maps").read_text(errors="replace")
    except OSError as exc:
        log.debug("memory map of pid %d: %s", pid, exc)
        return None


def read_pagemap(proc_root: Path, pid: int, addresses: Sequence[Sequence[int]]
                 ) -> list[list[int]] | None:
    """The ``pagemap`` entry of every address, group by group; None when the file cannot
    be read, and a shorter group where it ends early."""
    try:
        fd = os.open(proc_root / str(pid) / "pagemap", os.O_RDONLY)
    except OSError as exc:
        log.debug("pagemap of pid %d: %s", pid, exc)
        return None
    try:
        return [_entries(fd, group) for group in addresses]
    except OSError as exc:
        log.debug("pagemap of pid %d: %s", pid, exc)
        return None
    finally:
        os.close(fd)


def _entries(fd: int, addresses: Sequence[int]) -> list[int]:
    out: list[int] = []
    for address in addresses:
        entry = os.pread(fd, 8, address // PAGE * 8)
        if len(entry) != 8:
            break
        out.append(int.from_bytes(entry, "little"))
    return out
