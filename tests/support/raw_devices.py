"""A VFIO device as the host reader hands it over (``RawDevice``), with an Intel VT-d
unit by default, for the host interpretation tests (the IOMMU and the device's caps)."""

from __future__ import annotations

from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import DebugfsView, IommuFiles, RawDevice, Read, Text, Unread

#: The VT-d ECAP bits dirty tracking needs (scalable-mode translation, second-level A/D,
#: page-walk coherency).
SMTS, SLADS, SMPWC = 1 << 43, 1 << 45, 1 << 48
BDF = "0000:3b:00.1"
ON = Fact(True, "proc cmdline intel_iommu=sm_on")


def raw_device(address: str = BDF, *, driver: Read | None = None,
               debugfs: DebugfsView | None = None, iommu: IommuFiles | None = None,
               mdev: bool = False, present: bool = True) -> RawDevice:
    return RawDevice(
        address=address, mdev=mdev, present=present,
        driver=driver or Text(f"sysfs bus/pci/devices/{address}/driver", "vfio-pci"),
        debugfs=debugfs or DebugfsView("/sys/kernel/debug", "no-migration"),
        iommu=iommu if iommu is not None or mdev else intel_view("dmar0", SMTS | SLADS | SMPWC),
    )


def intel_view(unit: str, ecap: int, cap: str = "d2008c402f0462") -> IommuFiles:
    base = f"sysfs class/iommu/{unit}/intel-iommu"
    return IommuFiles(Text(f"sysfs bus/pci/devices/{BDF}/iommu", unit),
                      frozenset({"intel-iommu", "devices"}),
                      Text(f"{base}/ecap", f"{ecap:x}"), Text(f"{base}/cap", cap),
                      Unread(f"sysfs class/iommu/{unit}/amd-iommu/features", "no such file",
                             absent=True))
