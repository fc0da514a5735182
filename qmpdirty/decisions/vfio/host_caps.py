"""Raw host files -> ``HostDevice`` / ``HostFacts`` (pure core of the host probe).

Stage: host interpretation. Takes what ``host/sysfs.py`` read from sysfs, debugfs, proc
and /boot (each file as ``Text``, or ``Unread`` with the reason), plus the operator's
``[[device_caps]]``, and decides every fact with a short human ``source``. It must not
do I/O, log, read the clock or raise on bad input: malformed text is an unknown fact.
Kernel rules cite Linux 7.1.8 (reference §5.1-§5.3). Precedence per migration fact:
debugfs (basis ``host``), then ``[[device_caps]]`` (``bdf`` entry, then ``driver`` entry),
then the driver table of §5.3 (``drivers.py``), both basis ``driver``; a lower source that
disagrees is named in ``source`` as "overridden". QEMU's observed blockers may still
revise any of them later (``inference``). Between the shell's reads it also says
whether the next is needed: scalable mode only behind an Intel unit (``behind_intel``),
the kernel config only when the command line is silent (``scalable_mode_from_cmdline``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qmpdirty.decisions.vfio.drivers import BY_NAME, DriverRow
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import (
    DebugfsView,
    HostDevice,
    HostFacts,
    IommuFiles,
    IommuKind,
    IommuView,
    RawDevice,
    Read,
    Unread,
)

if TYPE_CHECKING:
    from qmpdirty.config.sections import DeviceCapsConfig


@dataclass(frozen=True, slots=True)
class Caps:
    """The four migration facts of a device, from one source."""

    migration: Fact[bool]
    p2p: Fact[bool]
    pre_copy: Fact[bool]
    dma_logging: Fact[bool]


def unknown(reason: str) -> Fact[bool]:
    return Fact[bool].unknown(reason)


def _why(fact: Fact[Any]) -> str:
    return fact.source.removeprefix("unknown: ")


def _same(fact: Fact[bool]) -> Caps:
    return Caps(fact, fact, fact, fact)


_WORD = re.compile(r"[a-z0-9_-]+")


def parse_hex(text: str) -> int | None:
    """A sysfs ``%llx`` value (optional 0x, at most 64 bits); None when malformed."""
    word = text.strip().lower().removeprefix("0x")
    if not 0 < len(word) <= 16 or any(c not in "0123456789abcdef" for c in word):
        return None
    return int(word, 16)


def _register(read: Read) -> int | str:
    """The register value, or the reason it is unknown."""
    if isinstance(read, Unread):
        return read.reason
    value = parse_hex(read.text)
    if value is None:
        return f"{read.label} is not a hex value: {read.text.strip()[:24]!r}"
    return value


def parse_features(text: str) -> frozenset[str] | None:
    """The words of debugfs ``migration/features`` (one per line, drivers/vfio/debugfs.c
    ``vfio_device_features_read``); None when a word is not a plain token."""
    words = text.split()
    return None if any(not _WORD.fullmatch(w) for w in words) else frozenset(words)


KCONFIG_SM = "CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON"


def scalable_mode_from_cmdline(cmdline: Read) -> Fact[bool] | None:
    """``intel_iommu=...sm_on|sm_off`` (intel_iommu_setup() applies options in order, by
    prefix: the last one wins). None: the command line does not say, the kernel config
    default applies. Unreadable: unknown, since it could have overridden the default."""
    if isinstance(cmdline, Unread):
        return unknown(f"scalable mode: {cmdline.reason}")
    found: Fact[bool] | None = None
    for word in cmdline.text.split():
        key, _, value = word.partition("=")
        if key != "intel_iommu":
            continue
        for option in value.strip('"').split(","):
            if option.startswith(("sm_on", "sm_off")):
                found = Fact(option.startswith("sm_on"), f"{cmdline.label} intel_iommu={value}")
    return found


def scalable_mode_from_kconfig(kconfig: Read) -> Fact[bool]:
    """The default: ``CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON`` (absent = not set)."""
    if isinstance(kconfig, Unread):
        return unknown(f"scalable mode: no intel_iommu=sm_on|sm_off and {kconfig.reason}")
    lines = [line.strip() for line in kconfig.text.splitlines()]
    if not any(line.startswith("CONFIG_") for line in lines):
        return unknown(f"scalable mode: {kconfig.label} is not a kernel config")
    if f"{KCONFIG_SM}=y" in lines:
        return Fact(True, f"{kconfig.label} {KCONFIG_SM}=y")
    return Fact(False, f"{kconfig.label}: {KCONFIG_SM} not set")


# --- host IOMMU dirty tracking (reference §5.1) -------------------------------------------

ECAP_SMTS, ECAP_SLADS, ECAP_SMPWC = 43, 45, 48  # drivers/iommu/intel/iommu.h
EFR_HATS_SHIFT, EFR_HDSUP = 10, 52  # FEATURE_HATS GENMASK_ULL(11, 10), FEATURE_HDSUP


def iommu_kind(unit: str, entries: Iterable[str]) -> IommuKind:
    """From the unit directory's entries (``intel-iommu``/``amd-iommu`` groups) or name."""
    names = set(entries)
    if "intel-iommu" in names or "amd-iommu" in names:
        return "intel" if "intel-iommu" in names else "amd"
    return "arm-smmu-v3" if unit.startswith("smmu3.") else "other"


def iommu_view(files: IommuFiles) -> IommuView:
    """The unit's kind, and the register files of that kind."""
    if isinstance(files.unit, Unread):
        return IommuView(files.unit)
    kind = iommu_kind(files.unit.text, files.entries)
    if kind == "intel":
        return IommuView(files.unit, kind, files.intel_ecap, files.intel_cap)
    if kind == "amd":
        return IommuView(files.unit, kind, files.amd_features)
    return IommuView(files.unit, kind)


def behind_intel(raws: Iterable[RawDevice | None]) -> bool:
    """Whether an asked device is behind an Intel VT-d unit: only then does scalable mode
    matter (read ``proc`` cmdline, then the kernel config if that is silent)."""
    return any(r is not None and r.iommu is not None and iommu_view(r.iommu).kind == "intel"
               for r in raws)


#: Scalable mode when no asked device is behind an Intel unit (nothing read).
NO_INTEL_UNIT = Fact[bool].unknown("no Intel VT-d unit")


def intel_dirty_tracking(ecap: Read, sm: Fact[bool]) -> Fact[bool]:
    """``ssads_supported()``: scalable mode on and ECAP SMTS, SLADS and SMPWC."""
    value = _register(ecap)
    if isinstance(value, str):
        return unknown(value)
    bits = (("SMTS", ECAP_SMTS), ("SLADS", ECAP_SLADS), ("SMPWC", ECAP_SMPWC))
    missing = [name for name, bit in bits if not value >> bit & 1]
    if missing:
        return Fact(False, f"{ecap.label}: no {'/'.join(missing)}")
    if sm.value is None:
        return unknown(f"{ecap.label} has SMTS+SLADS+SMPWC but {_why(sm)}")
    state = "on" if sm.value else "off"
    return Fact(sm.value, f"{ecap.label} SMTS+SLADS+SMPWC, scalable mode {state} ({sm.source})")


def amd_dirty_tracking(features: Read) -> Fact[bool]:
    """``amd_iommu_hd_support()``: false with ``amd_iommu_hatdis`` (EFR HATS == 3, or the
    IVHD HATDis attribute, which sysfs does not show), else EFR HDSup (bit 52).
    ``features`` is "efr:efr2"; older kernels print the EFR alone."""
    if isinstance(features, Unread):
        return unknown(features.reason)
    parts = [parse_hex(p) for p in features.text.strip().split(":")]
    efr = parts[0]
    if len(parts) > 2 or efr is None or None in parts:
        return unknown(f"{features.label} is not efr:efr2 hex: {features.text.strip()[:40]!r}")
    if efr >> EFR_HATS_SHIFT & 3 == 3:
        return Fact(False, f"{features.label}: EFR HATS=3, host translation disabled")
    if not efr >> EFR_HDSUP & 1:
        return Fact(False, f"{features.label}: no HDSup (EFR bit 52)")
    return Fact(True, f"{features.label} HDSup (EFR bit 52); IVHD HATDis is not in sysfs, "
                      "assumed clear")


def iommu_facts(raw: RawDevice, sm: Fact[bool]) -> tuple[Fact[str], Fact[bool]]:
    """The device's IOMMU unit and whether that unit can track dirty pages."""
    if raw.mdev:
        return (Fact[str].unknown("mdev: no IOMMU unit of its own"),
                Fact(False, "mdev: QEMU attaches it to the IOAS without a HWPT (reference §1.2)"))
    view = None if raw.iommu is None else iommu_view(raw.iommu)
    if view is None or isinstance(view.unit, Unread):
        why = view.unit.reason if view and isinstance(view.unit, Unread) else "not read"
        reason = f"{why} (IOMMU off, or the device is not behind one)"
        return Fact[str].unknown(reason), unknown(reason)
    unit = Fact(view.unit.text, view.unit.label)
    if view.kind == "intel" and view.registers is not None:
        return unit, intel_dirty_tracking(view.registers, sm)
    if view.kind == "amd" and view.registers is not None:
        return unit, amd_dirty_tracking(view.registers)
    if view.kind == "arm-smmu-v3":
        return unit, unknown(f"{view.unit.text}: ARM SMMUv3 has no sysfs attribute for IDR0 "
                             "(HTTU); dmesg 'features 0x...' bits 22 and 8 tell")
    return unit, unknown(f"{view.unit.text}: not an Intel VT-d or AMD-Vi unit")


def address_width(raws: Iterable[RawDevice | None]) -> Fact[int]:
    """The smallest MGAW, ``((cap >> 16) & 0x3f) + 1``, over the Intel units of the asked
    devices (to compare with a vIOMMU's aw-bits)."""
    views = [iommu_view(r.iommu) for r in raws if r and r.iommu]
    caps = {v.cap.label: v.cap for v in views if v.kind == "intel" and v.cap is not None}
    values = {label: _register(cap) for label, cap in caps.items()}
    widths = [Fact[int].unknown(v) if isinstance(v, str) else
              Fact((v >> 16 & 0x3F) + 1, f"{label} MGAW") for label, v in values.items()]
    if not widths:
        return Fact[int].unknown("no asked device is behind an Intel VT-d unit "
                                 "(only its cap register gives the width)")
    known = [w for w in widths if w.value is not None]
    return min(known, key=lambda w: w.value or 0) if known else Fact[int].unknown(
        "; ".join(_why(w) for w in widths))


# --- migration facts from debugfs (reference §5.2) ---------------------------------------

_DEBUGFS_UNKNOWN = {
    "unmounted": "debugfs not mounted at {root} (mount it or state the facts in [[device_caps]])",
    "unreadable": "debugfs at {root} not readable: {detail} (run as root or state the facts "
                  "in [[device_caps]])",
    "no-vfio": "debugfs at {root} has no vfio/ (kernel < 6.8 or CONFIG_VFIO_DEBUGFS off)",
    "no-device": "debugfs has no vfio/{address} (device not bound to a VFIO driver?)",
}


def debugfs_caps(address: str, view: DebugfsView) -> Caps:
    """The ``migration`` dir exists iff the driver has mig_ops (drivers/vfio/debugfs.c);
    ``features`` (6.18+) lists stop-copy, p2p, pre-copy and dirty-tracking (log_ops)."""
    here = f"debugfs vfio/{address}"
    if view.state == "no-migration":
        return _same(Fact(False, f"{here} has no migration/ (driver without mig_ops)"))
    if view.state != "migration":
        text = _DEBUGFS_UNKNOWN[view.state]
        return _same(unknown(text.format(root=view.root, detail=view.detail, address=address)))
    # vfio_pci_core_register_device() refuses mig_ops without STOP_COPY.
    has_ops = Fact(True, f"{here}/migration exists (mig_ops)")
    features = view.features
    if features is None or isinstance(features, Unread):
        reason = (f"{here}/migration/features absent (kernel < 6.18)"
                  if features is None or features.absent else features.reason)
        return Caps(has_ops, unknown(reason), unknown(reason), unknown(reason))
    words = parse_features(features.text)
    if words is None:
        bad = unknown(f"{features.label} is not a feature list: {features.text.strip()[:40]!r}")
        return Caps(has_ops, bad, bad, bad)
    return Caps(*(Fact(word in words, features.label)
                  for word in ("stop-copy", "p2p", "pre-copy", "dirty-tracking")))


# --- the driver table (reference §5.3, ``drivers.py``) ------------------------------------


def _table_caps(row: DriverRow) -> Caps:
    """A driver's row as facts of basis ``driver``; a per-device value stays unknown."""
    where = f"driver table: {row.name} {row.sets} (Linux 7.1.8 {row.source}, reference §5.3)"

    def one(value: bool | None, depends: str = "") -> Fact[bool]:
        if value is None:
            return unknown(f"{row.name}: {depends}; state it in [[device_caps]]")
        return Fact(value, where, "driver")

    if row.migration is False:
        return _same(Fact(False, where, "driver"))
    return Caps(one(row.migration, row.depends), one(row.p2p), one(row.pre_copy),
                one(row.dma_logging, row.logging_depends))


#: What each known driver sets when nothing can be read (unknown: depends on the device).
DRIVER_TABLE: dict[str, Caps] = {name: _table_caps(row) for name, row in BY_NAME.items()}


def driver_caps(driver: Fact[str]) -> Caps:
    """The expected facts of the bound driver, when nothing better is known."""
    if driver.value is None:
        return _same(unknown("no bound driver to look up"))
    return DRIVER_TABLE.get(driver.value) or _same(
        unknown(f"{driver.value} is not in the driver table; state it in [[device_caps]]"))


def decide(read: Fact[bool], stated: Sequence[Fact[bool]], table: Fact[bool]) -> Fact[bool]:
    """The first known of read, stated (best first), table; a later known value that
    disagrees is named as overridden. All unknown: the reasons of read and table."""
    known = [f for f in (read, *stated, table) if f.value is not None]
    if not known:
        return unknown("; ".join(dict.fromkeys((_why(read), _why(table)))))
    chosen = known[0]
    notes = [f"{f.source} said {str(f.value).lower()}, overridden"
             for f in known[1:] if f.value != chosen.value]
    return Fact(chosen.value, "; ".join([chosen.source, *notes]), chosen.basis)


def stated_entries(address: str, driver: str | None,
                   caps: Sequence[DeviceCapsConfig]) -> list[tuple[str, DeviceCapsConfig]]:
    """The ``[[device_caps]]`` entries that apply, best first: by BDF, then by driver
    (the first entry of each kind counts)."""
    by_bdf = next((c for c in caps if c.bdf is not None and c.bdf == address), None)
    by_driver = next((c for c in caps if c.driver is not None and c.driver == driver), None)
    return [(f"config [[device_caps]] {label}", entry) for label, entry in
            ((f"bdf={address}", by_bdf), (f"driver={driver}", by_driver)) if entry is not None]


def driver_fact(raw: RawDevice) -> Fact[str]:
    """The bound driver: basename of the ``driver`` link."""
    if not raw.present:
        where = "bus/mdev/devices" if raw.mdev else "bus/pci/devices"
        return Fact[str].unknown(f"no {raw.address} under sysfs {where}")
    if isinstance(raw.driver, Unread):
        return Fact[str].unknown(f"no driver bound ({raw.driver.label} absent)"
                                 if raw.driver.absent else raw.driver.reason)
    return Fact(raw.driver.text, raw.driver.label)


def interpret_device(raw: RawDevice, sm: Fact[bool],
                     caps: Sequence[DeviceCapsConfig]) -> HostDevice:
    """One device's facts (``sm``: whether Intel scalable mode is on)."""
    driver = driver_fact(raw)
    if not raw.present:
        return unknown_device(raw.address, _why(driver), raw.mdev)
    read, table = debugfs_caps(raw.address, raw.debugfs), driver_caps(driver)
    entries = stated_entries(raw.address, driver.value, caps)

    def fact(name: str) -> Fact[bool]:
        stated = [Fact(value, label, "driver") for label, entry in entries
                  if (value := getattr(entry, name)) is not None]
        return decide(getattr(read, name), stated, getattr(table, name))

    unit, dirty = iommu_facts(raw, sm)
    return HostDevice(
        bdf=raw.address, driver=driver, migration=fact("migration"), p2p=fact("p2p"),
        pre_copy=fact("pre_copy"), dma_logging=fact("dma_logging"), iommu_unit=unit,
        iommu_dirty_tracking=dirty, mdev=raw.mdev,
        max_ranges=next((e.max_ranges for _, e in entries if e.max_ranges), None),
        max_log2_address_space=next(
            (e.max_log2_address_space for _, e in entries if e.max_log2_address_space), None),
    )


def unknown_device(bdf: str, why: str, mdev: bool = False) -> HostDevice:
    """A device the host does not show at all: every fact unknown for the same reason."""
    return HostDevice(bdf=bdf, driver=Fact[str].unknown(why), migration=unknown(why),
                      p2p=unknown(why), pre_copy=unknown(why), dma_logging=unknown(why),
                      iommu_unit=Fact[str].unknown(why), iommu_dirty_tracking=unknown(why),
                      mdev=mdev)


def interpret_host(raws: Mapping[str, RawDevice | None], sm: Fact[bool],
                   caps: Sequence[DeviceCapsConfig]) -> HostFacts:
    """``HostFacts`` keyed by the addresses as asked (None: not an address)."""
    devices = {asked: interpret_device(raw, sm, caps) if raw else unknown_device(
        asked, f"{asked!r} is not a PCI address or an mdev UUID") for asked, raw in raws.items()}
    return HostFacts(devices=devices, address_width=address_width(raws.values()))
