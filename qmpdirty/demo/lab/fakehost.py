"""Fake host trees (tests, the demo): sysfs, debugfs, proc and /boot under a temporary directory.

Describe a host with ``FakeHost`` (devices, IOMMU units, command line, kernel config,
debugfs state), ``build`` it, and point ``daemon.vfio_verdict.host_facts`` (the reads of
``host/sysfs.py``, interpreted) at it through ``tree.host_config``::

    tree = build(tmp_path, FakeHost(
        iommus=(IntelUnit("dmar0", ecap=ECAP_DIRTY),),
        devices=(FakeDevice("0000:3b:00.1", "mlx5_vfio_pci", migration=ALL_FEATURES),),
        cmdline="ro intel_iommu=on,sm_on",
    ))
    facts = host_facts(tree.host_config, [], ["0000:3b:00.1"])

The layout follows the kernel's, with relative symlinks (the tree can be moved):

    sys/devices/pci0000:3b/0000:3b:00.1/driver -> ../../../bus/pci/drivers/<driver>
    sys/bus/pci/drivers/<driver>/0000:3b:00.1   -> ../../../../devices/pci0000:3b/0000:3b:00.1
    sys/devices/pci0000:3b/0000:3b:00.1/iommu  -> ../../virtual/iommu/<unit>
    sys/bus/pci/devices/0000:3b:00.1            -> ../../../devices/pci0000:3b/0000:3b:00.1
    sys/devices/virtual/iommu/dmar0/intel-iommu/{ecap,cap}     ("%llx\\n")
    sys/devices/virtual/iommu/ivhd0/amd-iommu/features          ("efr:efr2\\n")
    sys/class/iommu/<unit>                      -> ../../devices/virtual/iommu/<unit>
    sys/bus/mdev/devices/<uuid>                 -> ../../../devices/virtual/mdev/<uuid>
    debug/vfio/<address>/migration/{state,features}
    proc/cmdline  proc/sys/kernel/osrelease  proc/config.gz  boot/config-<release>

``make_unreadable`` spoils one path (chmod 000, or a swap where root ignores modes) and
``FakeTree.files()`` lists every regular file written, for fuzzing their contents.
Nothing here touches the real host.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qmpdirty.config.sections import HostConfig

# --- building blocks ------------------------------------------------------------------

#: Intel ECAP with SMTS (43), SLADS (45) and SMPWC (48): dirty tracking in scalable mode.
ECAP_DIRTY = 1 << 43 | 1 << 45 | 1 << 48 | 0xF050DA
#: A pre-scalable-mode ECAP (no SMTS/SLADS/SMPWC), as on Broadwell-era servers.
ECAP_LEGACY = 0xF050DA

ALL_FEATURES = ("stop-copy", "p2p", "pre-copy", "dirty-tracking")
#: ``FakeDevice.migration``: no ``vfio/<address>`` in debugfs (not a VFIO device).
NOT_IN_DEBUGFS = "not-in-debugfs"
#: ``FakeDevice.migration``: ``migration/`` without ``features`` (kernels 6.8 to 6.17).
NO_FEATURES_FILE = "no-features-file"

KCONFIG_SM_ON = "CONFIG_INTEL_IOMMU=y\nCONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y\n"
KCONFIG_SM_OFF = ("CONFIG_INTEL_IOMMU=y\n"
                  "# CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON is not set\n")


def intel_cap(mgaw: int = 48) -> int:
    """An Intel CAP register with MGAW ``mgaw`` bits and 4-level SAGAW."""
    return (mgaw - 1) << 16 | 0x4 << 8 | 0x62


def amd_features(hdsup: bool = True, hats: int = 2, efr2: int | None = 0) -> str:
    """The ``amd-iommu/features`` text: EFR with HDSup (bit 52) and HATS (bits 11:10);
    ``efr2=None`` gives the one-value format of older kernels."""
    efr = 0x25BF732FA2295AFE & ~(1 << 52 | 3 << 10) | hdsup << 52 | (hats & 3) << 10
    return f"{efr:x}" if efr2 is None else f"{efr:x}:{efr2:x}"


@dataclass(frozen=True)
class IntelUnit:
    """A VT-d unit; an int register is written as ``%llx``, a str verbatim."""

    name: str = "dmar0"
    ecap: int | str = ECAP_DIRTY
    cap: int | str = intel_cap(48)


@dataclass(frozen=True)
class AmdUnit:
    """An AMD-Vi unit; ``features`` is written verbatim."""

    name: str = "ivhd0"
    features: str = amd_features()


@dataclass(frozen=True)
class ArmUnit:
    """An SMMUv3 unit: no register attributes in sysfs."""

    name: str = "smmu3.0x0000000009050000"


Unit = IntelUnit | AmdUnit | ArmUnit
DebugfsKind = Literal["mounted", "no-vfio", "unmounted", "absent"]
ConfigAt = Literal["boot", "proc"]


@dataclass(frozen=True)
class FakeDevice:
    """One device: a PCI address, or an mdev UUID (then ``iommu`` is ignored).

    ``driver``: the bound driver (None: unbound). ``migration``: a tuple of words for
    ``migration/features``, None for ``vfio/<address>`` without ``migration/`` (a driver
    without mig_ops), or ``NOT_IN_DEBUGFS`` / ``NO_FEATURES_FILE``. ``iommu``: the unit
    the ``iommu`` link points at (None: no link)."""

    address: str
    driver: str | None = "vfio-pci"
    migration: tuple[str, ...] | str | None = None
    iommu: str | None = "dmar0"


@dataclass(frozen=True)
class FakeHost:
    """The host. ``kernel_config`` None: no config anywhere; ``kernel_config_at`` picks
    ``boot/config-<release>`` or ``proc/config.gz``. ``debugfs``: "mounted" (with
    ``vfio/``), "no-vfio" (mounted, no vfio/), "unmounted" (empty mount point) or
    "absent" (no such directory)."""

    devices: tuple[FakeDevice, ...] = ()
    iommus: tuple[Unit, ...] = (IntelUnit(),)
    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"
    release: str = "6.18.0-qmpdirty"
    kernel_config: str | None = KCONFIG_SM_ON
    kernel_config_at: ConfigAt = "boot"
    debugfs: DebugfsKind = "mounted"


@dataclass(frozen=True)
class FakeTree:
    """A built host: roots under ``root`` and the ``HostConfig`` that points at them."""

    root: Path
    host: FakeHost

    @property
    def sysfs(self) -> Path:
        return self.root / "sys"

    @property
    def debugfs(self) -> Path:
        return self.root / "debug"

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    @property
    def boot(self) -> Path:
        return self.root / "boot"

    @property
    def host_config(self) -> HostConfig:
        return HostConfig(sysfs_root=self.sysfs, debugfs_root=self.debugfs,
                          proc_root=self.proc, boot_root=self.boot)

    def files(self) -> list[Path]:
        """Every regular file of the tree (not following symlinks), sorted."""
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())


# --- building -----------------------------------------------------------------------------


def build(root: Path, host: FakeHost) -> FakeTree:
    """Write ``host`` under ``root`` (which may exist) and return the tree."""
    tree = FakeTree(root, host)
    (tree.sysfs / "bus/pci/drivers").mkdir(parents=True, exist_ok=True)
    for unit in host.iommus:
        _write_unit(tree.sysfs, unit)
    for device in host.devices:
        _write_device(tree.sysfs, device)
    _write_debugfs(tree.debugfs, host)
    _write(tree.proc / "cmdline", host.cmdline + "\n")
    _write(tree.proc / "sys/kernel/osrelease", host.release + "\n")
    tree.boot.mkdir(parents=True, exist_ok=True)
    if host.kernel_config is not None and host.kernel_config_at == "boot":
        _write(tree.boot / f"config-{host.release}", host.kernel_config)
    elif host.kernel_config is not None:
        _write(tree.proc / "config.gz", gzip.compress(host.kernel_config.encode()))
    return tree


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _link(link: Path, target: Path) -> None:
    """A relative symlink ``link -> target``, as sysfs makes them."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _register(value: int | str) -> str:
    return f"{value:x}\n" if isinstance(value, int) else value


def _write_unit(sysfs: Path, unit: Unit) -> None:
    home = sysfs / "devices/virtual/iommu" / unit.name
    home.mkdir(parents=True, exist_ok=True)
    if isinstance(unit, IntelUnit):
        _write(home / "intel-iommu/ecap", _register(unit.ecap))
        _write(home / "intel-iommu/cap", _register(unit.cap))
        _write(home / "intel-iommu/version", "1:0\n")
    elif isinstance(unit, AmdUnit):
        _write(home / "amd-iommu/features", unit.features)
        _write(home / "amd-iommu/cap", "190b0000\n")
    _link(sysfs / "class/iommu" / unit.name, home)


def _write_device(sysfs: Path, device: FakeDevice) -> None:
    mdev = "-" in device.address
    bus = "mdev" if mdev else "pci"
    parent = "devices/virtual/mdev" if mdev else f"devices/pci{device.address[:7]}"
    home = sysfs / parent / device.address
    _write(home / "uevent", f"PCI_SLOT_NAME={device.address}\n")
    _link(sysfs / "bus" / bus / "devices" / device.address, home)
    if device.driver is not None:
        driver_dir = sysfs / "bus" / bus / "drivers" / device.driver
        driver_dir.mkdir(parents=True, exist_ok=True)
        _link(home / "driver", driver_dir)
        _link(driver_dir / device.address, home)
    if device.iommu is not None and not mdev:
        unit_home = sysfs / "devices/virtual/iommu" / device.iommu
        _link(home / "iommu", unit_home)
        _link(unit_home / "devices" / device.address, home)


def _write_debugfs(debugfs: Path, host: FakeHost) -> None:
    if host.debugfs == "absent":
        return
    debugfs.mkdir(parents=True, exist_ok=True)
    if host.debugfs == "unmounted":
        return
    _write(debugfs / "iommu/intel/iommu_regset", "")
    if host.debugfs == "no-vfio":
        return
    (debugfs / "vfio").mkdir(exist_ok=True)
    for device in host.devices:
        if device.migration == NOT_IN_DEBUGFS:
            continue
        home = debugfs / "vfio" / device.address
        home.mkdir(parents=True, exist_ok=True)
        if device.migration is None:
            continue
        _write(home / "migration/state", "RUNNING\n")
        if isinstance(device.migration, tuple):
            _write(home / "migration/features", "".join(f"{w}\n" for w in device.migration))


# --- spoiling --------------------------------------------------------------------------------


def _can_read(path: Path) -> bool:
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            path.read_bytes()
    except OSError:
        return False
    return True


def make_unreadable(path: Path) -> str:
    """Make ``path`` fail to read and say how. ``chmod 000`` where that works; as root
    (CI), where modes do not stop reads, a file becomes an empty directory (EISDIR) and a
    directory becomes an empty file (ENOTDIR)."""
    path.chmod(0)
    if not _can_read(path):
        return "chmod 000"
    if path.is_dir():
        path.chmod(0o755)
        shutil.rmtree(path)
        path.write_bytes(b"")
        return "directory replaced by a file"
    path.unlink()
    path.mkdir()
    return "file replaced by a directory"


def overwrite(paths: Iterable[Path], contents: Iterable[bytes]) -> None:
    """Write each content to the matching path (for fuzzing every file at once)."""
    for path, data in zip(paths, contents, strict=True):
        path.write_bytes(data)
