"""What the host backs of one VM's RAM: read (``host.residency``), then judged
(``decisions.migration.residency``), for the forecast's first pass (shell).

Read on the loop, not in a thread: it takes well under a millisecond for a QEMU's few
hundred mappings and a few hundred samples, and a thousand VMs' threads contending for
the interpreter held events up to 24 ms at 1,000 VMs. Must not interpret a file.
"""

from __future__ import annotations

from pathlib import Path

from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration.residency import (
    guest_ram_mappings,
    residency_from,
    sample_addresses,
)
from qmpdirty.facts.vm import GuestResidency
from qmpdirty.host.residency import read_maps, read_pagemap


def read_residency(proc_root: Path, pid: int | None, ram_bytes: int | None, now: float
                   ) -> GuestResidency | None:
    """What the host backs of the RAM of QEMU process ``pid``, and where in its largest
    block (None when the pid or RAM is unknown, a file cannot be read, or no mappings add
    up to the RAM)."""
    if pid is None or not ram_bytes or pid <= 0:
        return None
    maps = read_maps(proc_root, pid)
    taken = guest_ram_mappings(maps, ram_bytes) if maps is not None else None
    if taken is None:
        return None
    entries = read_pagemap(proc_root, pid, [sample_addresses(m) for m in taken])
    return residency_from(taken, entries, ram_bytes, now) if entries is not None else None


def refresh_residency(view: VmView) -> None:
    """What the host backs of the VM's RAM into the forecaster. Unknown (None) without
    a pid, the RAM, or the right to read the process's memory map."""
    ram = view.info.basics.ram_bytes if view.info else None
    view.forecaster.residency = read_residency(view.cfg.host.proc_root, view.identity.pid,
                                               ram, view.clock())
