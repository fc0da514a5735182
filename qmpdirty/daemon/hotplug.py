"""What VFIO devices this host offers, read every ``[vfio] hotplug_poll_s`` (shell, one
task for the whole daemon).

Every VM's VFIO task lists its device containers every ``hotplug_poll_s`` to notice a
hot-plug (QEMU has no DEVICE_ADDED event): two ``qom-list`` per VM, at 1,000 VMs 400 of
the daemon's ~680 QMP commands per second at the defaults. It need not while no VFIO
device can come (``decisions.vfio.hotplug``), which on most hosts is always (then it
asks only QEMU's blocked-reasons, one command): this task keeps ``HostVfio.devices``
current from sysfs (one directory listing per VFIO driver, in a worker thread), and
the VM tasks read it. Must not: decide, or poll QEMU.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from qmpdirty.config.load import Config
from qmpdirty.host.sysfs import read_vfio_devices


@dataclass
class HostVfio:
    """The host's VFIO devices as last read; None while not read or unreadable."""

    devices: frozenset[str] | None = None


async def watch_host_vfio(cfg: Config, state: HostVfio) -> None:
    """Read the host's VFIO devices now and every ``hotplug_poll_s``, until cancelled."""
    while True:
        state.devices = await asyncio.to_thread(read_vfio_devices, cfg.host)
        await asyncio.sleep(cfg.vfio.hotplug_poll_s)
