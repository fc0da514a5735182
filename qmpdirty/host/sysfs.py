"""Host probe: reads sysfs, debugfs, proc and /boot for the VFIO engine (shell).

Stage: shell (host I/O). Reads files under the roots of ``[host]`` (``sysfs_root``,
``debugfs_root``, ``proc_root``, ``boot_root``) and nothing else. It only reads: it
never writes, never opens a device node, never mounts debugfs. It must not raise for a
missing, unreadable or garbled file: every file is read as ``Text`` or as ``Unread``
with the reason (``facts.host``). It must not decide what a file means either: it
returns what it read (``RawDevice``, ``IommuFiles``, the command line, the kernel
config), and the pure ``decisions.vfio.host_caps`` interprets it; where a meaning
decides what to read next, this module reads every candidate (each register file an
IOMMU kind may have) or the caller reads in two steps with that decision between them
(scalable mode: ``daemon/vfio_verdict.host_facts``).
"""

from __future__ import annotations

import errno
import os
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from qmpdirty.config.sections import HostConfig
from qmpdirty.facts.host import DebugfsView, IommuFiles, RawDevice, Read, Text, Unread

#: sysfs/debugfs attributes are one page; a kernel config is a few hundred KiB.
ATTRIBUTE_LIMIT = 64 * 1024
CONFIG_LIMIT = 4 * 1024 * 1024
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")
_BDF = re.compile(r"(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])")
_UUID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")


def read_devices(cfg_host: HostConfig, bdfs: Iterable[str]) -> dict[str, RawDevice | None]:
    """What the host shows of each address in ``bdfs`` (a PCI address, or an mdev UUID),
    keyed as asked; None: not an address. Never raises for what the files hold or lack."""
    debugfs = read_debugfs_root(cfg_host.debugfs_root)
    return {asked: read_device(cfg_host, debugfs, asked) for asked in dict.fromkeys(bdfs)}


def canonical_address(asked: str) -> tuple[str, bool] | None:
    """``(address, is_mdev)``: "3B:00.1" -> ("0000:3b:00.1", False); a UUID is an mdev
    (``bus/mdev/devices/<uuid>``). None: neither, and no path is built from it."""
    text = asked.strip().lower()
    if _UUID.fullmatch(text):
        return text, True
    match = _BDF.fullmatch(text)
    if match is None or int(match[3], 16) > 0x1F:
        return None
    domain, bus, slot, function = match.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{slot:0>2}.{function}", False


# --- files -------------------------------------------------------------------------------


def _why(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EISDIR:
        return "is a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def read_bytes(root: Path, fs: str, rel: str, limit: int = ATTRIBUTE_LIMIT) -> bytes | Unread:
    """``root/rel`` (labelled "<fs> <rel>"), at most ``limit`` bytes. O_NONBLOCK so that a
    FIFO in a strange tree cannot hang the probe."""
    label = f"{fs} {rel}"
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        return Unread(label, "no such file", absent=True)
    except (OSError, ValueError) as exc:
        return Unread(label, _why(exc))
    if len(data) > limit:
        return Unread(label, f"larger than {limit} bytes")
    return data


def read_text(root: Path, fs: str, rel: str, limit: int = ATTRIBUTE_LIMIT) -> Read:
    """A file as text; bytes that are not UTF-8 become U+FFFD (and fail parsing later)."""
    data = read_bytes(root, fs, rel, limit)
    if isinstance(data, Unread):
        return data
    return Text(f"{fs} {rel}", data.decode("utf-8", errors="replace"))


def read_link_name(root: Path, fs: str, rel: str) -> Read:
    """The basename of a symlink's target (``driver``, ``iommu``)."""
    label = f"{fs} {rel}"
    try:
        target = os.readlink(root / rel)
    except FileNotFoundError:
        return Unread(label, "no such link", absent=True)
    except OSError as exc:
        return Unread(label, "not a symlink" if exc.errno == errno.EINVAL else _why(exc))
    except ValueError as exc:
        return Unread(label, _why(exc))
    name = os.path.basename(target.rstrip("/"))
    if name in ("", ".", ".."):
        return Unread(label, f"odd target {target!r}")
    return Text(label, name)


def read_vfio_devices(cfg: HostConfig) -> frozenset[str] | None:
    """Every device this host could hand to a VM through VFIO now: PCI devices bound to
    ``vfio-pci`` or a variant driver (``*_vfio_pci``: any PCI driver named ``vfio``),
    and mediated devices. None when the PCI drivers cannot be listed (then nothing is
    known). A VFIO hot-plug needs one of these bound first (libvirt binds a managed
    ``hostdev`` just before ``device_add``)."""
    drivers = cfg.sysfs_root / "bus" / "pci" / "drivers"
    try:
        names = os.listdir(drivers)
    except (OSError, ValueError):
        return None
    found = {f"pci:{entry}" for name in names if "vfio" in name
             for entry in _entries(drivers / name) if _BDF.fullmatch(entry)}
    found |= {f"mdev:{entry}" for entry in _entries(cfg.sysfs_root / "bus/mdev/devices")}
    return frozenset(found)


def _entries(path: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except (OSError, ValueError):
        return frozenset()


# --- debugfs -------------------------------------------------------------------------------


def read_debugfs_root(root: Path) -> DebugfsView | None:
    """None when ``<root>/vfio`` can be looked into; else the view every device gets.
    An absent or empty mount point is "not mounted" (debugfs is never empty)."""
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return DebugfsView(str(root), "unmounted")
    except (OSError, ValueError) as exc:
        return DebugfsView(str(root), "unreadable", _why(exc))
    if not entries:
        return DebugfsView(str(root), "unmounted")
    if not os.path.isdir(root / "vfio"):
        return DebugfsView(str(root), "no-vfio")
    return None


def read_debugfs_device(root: Path, shared: DebugfsView | None, address: str) -> DebugfsView:
    """``vfio/<address>/migration/features`` (the directory only with mig_ops)."""
    if shared is not None:
        return shared
    device = root / "vfio" / address
    if not os.path.isdir(device):
        return DebugfsView(str(root), "no-device")
    migration = device / "migration"
    if not os.path.isdir(migration):
        if os.path.lexists(migration):
            return DebugfsView(str(root), "unreadable", f"vfio/{address}/migration is not a "
                               "directory")
        return DebugfsView(str(root), "no-migration")
    features = read_text(root, "debugfs", f"vfio/{address}/migration/features")
    return DebugfsView(str(root), "migration", features=features)


# --- sysfs ---------------------------------------------------------------------------------


def read_iommu(sysfs: Path, device_rel: str) -> IommuFiles:
    """The unit behind ``<device>/iommu``, the entries of ``class/iommu/<unit>`` and the
    register files there of every kind (a few small files; the absent ones say so)."""
    unit = read_link_name(sysfs, "sysfs", f"{device_rel}/iommu")
    if isinstance(unit, Unread):
        return IommuFiles(unit)
    base = f"class/iommu/{unit.text}"
    return IommuFiles(unit, _entries(sysfs / base),
                      intel_ecap=read_text(sysfs, "sysfs", f"{base}/intel-iommu/ecap"),
                      intel_cap=read_text(sysfs, "sysfs", f"{base}/intel-iommu/cap"),
                      amd_features=read_text(sysfs, "sysfs", f"{base}/amd-iommu/features"))


def read_device(cfg: HostConfig, debugfs: DebugfsView | None, asked: str) -> RawDevice | None:
    """Everything about one device; None when ``asked`` is not an address at all."""
    parsed = canonical_address(asked)
    if parsed is None:
        return None
    address, mdev = parsed
    rel = f"bus/{'mdev' if mdev else 'pci'}/devices/{address}"
    return RawDevice(
        address=address, mdev=mdev, present=os.path.isdir(cfg.sysfs_root / rel),
        driver=read_link_name(cfg.sysfs_root, "sysfs", f"{rel}/driver"),
        debugfs=read_debugfs_device(cfg.debugfs_root, debugfs, address),
        iommu=None if mdev else read_iommu(cfg.sysfs_root, rel),
    )


# --- proc and /boot: Intel scalable mode ------------------------------------------------------


def read_cmdline(cfg: HostConfig) -> Read:
    """``<proc>/cmdline`` (where ``intel_iommu=sm_on|sm_off`` would be)."""
    return read_text(cfg.proc_root, "proc", "cmdline")


def read_kernel_config(cfg: HostConfig) -> Read:
    """The running kernel's config: ``<proc>/config.gz`` (CONFIG_IKCONFIG_PROC), else
    ``<boot>/config-<release>``, the release from ``<proc>/sys/kernel/osrelease``."""
    packed = read_gzip(cfg.proc_root, "proc", "config.gz")
    if isinstance(packed, Text):
        return packed
    release = read_text(cfg.proc_root, "proc", "sys/kernel/osrelease")
    if isinstance(release, Text):
        name = release.text.strip()
        if _RELEASE.fullmatch(name):
            plain = read_text(cfg.boot_root, "boot", f"config-{name}", CONFIG_LIMIT)
            if isinstance(plain, Text):
                return plain
            release = plain
        else:
            release = Unread(release.label, f"not a kernel release: {name[:40]!r}")
    return Unread("the kernel config", f"{packed.reason}; {release.reason}")


def read_gzip(root: Path, fs: str, rel: str) -> Read:
    """A gzip file as text, at most ``CONFIG_LIMIT`` bytes unpacked."""
    data = read_bytes(root, fs, rel, CONFIG_LIMIT)
    if isinstance(data, Unread):
        return data
    label = f"{fs} {rel}"
    unpack = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        text = unpack.decompress(data, CONFIG_LIMIT)
    except zlib.error as exc:
        return Unread(label, f"not gzip: {exc}")
    if not unpack.eof:
        return Unread(label, f"truncated, or larger than {CONFIG_LIMIT} bytes unpacked")
    return Text(label, text.decode("utf-8", errors="replace"))
