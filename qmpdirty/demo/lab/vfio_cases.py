"""Builders for VFIO topologies and host facts: engine tests, golden cases, the engine bench.

Values of the pure core's own types (``facts``), built as QEMU 10 and the host would
show them; nothing here decides anything.

Each driver profile states what the host would show for that variant driver
(reference §5.3): whether it has mig_ops (``migration``), P2P, DMA logging.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostDevice, HostFacts
from qmpdirty.facts.topology import VfioDevice, Viommu, VmTopology
from qmpdirty.facts.vm import VmBasics

#: driver -> (migration, p2p, dma_logging) as debugfs features would show them
DRIVERS: dict[str, tuple[bool, bool, bool]] = {
    "vfio-pci": (False, False, False),
    "mlx5_vfio_pci": (True, True, True),
    "pds_vfio_pci": (True, True, True),
    "hisi_acc_vfio_pci": (True, False, False),
    "qat_vfio_pci": (True, True, False),
    "virtio_vfio_pci": (True, True, False),
}


def dev(n: int, *, qom_type: str = "vfio-pci", realize: int | None = None, **props: Any
        ) -> VfioDevice:
    """A VFIO device ``hostdev<n>`` on host BDF ``0000:3b:00.<n>`` (QEMU 10 property set)."""
    base = VfioDevice(
        qom_path=f"/machine/peripheral/hostdev{n}", qom_type=qom_type, id=f"hostdev{n}",
        host=f"0000:3b:00.{n}", sysfsdev=None, enable_migration="auto",
        device_dirty_page_tracking="on", pre_copy_dirty_page_tracking="on",
        migration_events=False, root_bus_bypass_iommu=False,
        realize_index=n if realize is None else realize,
    )
    return replace(base, **props)


def host_dev(n: int, driver: str, *, iommu_dirty: bool = False, **over: Any) -> HostDevice:
    migration, p2p, dma = DRIVERS[driver]
    src = "debugfs vfio/migration/features"
    base = HostDevice(
        bdf=f"0000:3b:00.{n}", driver=Fact(driver, "sysfs driver link"),
        migration=Fact(migration, src), p2p=Fact(p2p if migration else None, src),
        pre_copy=Fact(migration, src), dma_logging=Fact(dma if migration else None, src),
        iommu_unit=Fact("dmar0", "sysfs iommu link"),
        iommu_dirty_tracking=Fact(iommu_dirty, "intel-iommu ecap"),
    )
    return replace(base, **over)


def topo(version: str, *devices: VfioDevice, viommu: bool = False, ram: int = 2**30,
         blocked: tuple[str, ...] = ()) -> VmTopology:
    major, minor = (int(x) for x in version.split(".")[:2])
    return VmTopology(
        basics=VmBasics((major, minor, 0), "pc-q35-10.0", base_ram_bytes=ram),
        devices=devices,
        viommus=(Viommu("/machine/peripheral/iommu0", "intel-iommu", 48, True, True),)
        if viommu else (),
        blocked_reasons=blocked,
    )


def hosts(*devices: HostDevice) -> HostFacts:
    return HostFacts(devices={d.bdf: d for d in devices})
