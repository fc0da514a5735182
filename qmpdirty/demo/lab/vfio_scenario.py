"""What a VM with VFIO devices shows over QMP: the scenario the VFIO stand-in presents.

A ``Scenario`` is a QEMU version plus the VFIO devices, iommufd objects and vIOMMU
QEMU would have been started with, and the ``blocked_reasons`` that QEMU of that
version raises for them. Those texts are **hand-written** by whoever writes the
scenario (``golden.py``, from QEMU's source), never computed by qmpdirty.

This module renders the scenario the way QEMU does (sources: QEMU 10.0.2 / 10.2.2):

* QOM properties of ``vfio-pci`` per version, from the ``/* N.M */`` comments of
  ``vfio_pci_class_init`` (hw/vfio/pci.c) and ``vfio_pci_properties[]``; each with
  the type ``qom-list`` shows and the type its getter visits (``addr`` is declared
  ``str`` but ``qom-get`` returns the devfn as an int: ``qdev_prop_pci_devfn``);
* ``vfio-user-pci`` (10.1+, hw/vfio-user/pci.c) has none of the VFIO migration
  properties: its parent is the abstract ``vfio-pci-device``;
* BAR mmaps in ``info mtree -f -o`` (system/memory.c ``mtree_print_flatview``):
  ``ramd`` sections named ``"<vbasedev name> BAR <n> mmaps[0]"``, owned by the
  device (``owner:{dev id=X}``, or ``dev path=`` without an id);
* ``query-pci`` entries of devices on ``pcie.0`` or a bridge's bus (hw/pci/pci-qmp-cmds.c),
  with the class descriptions of ``pci_class_descriptions[]`` (hw/pci/pci.c).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from qmpdirty.demo.errors import DemoError
from qmpdirty.facts.qemu import (
    ENABLE_MIGRATION,
    IOMMUFD,
    IOMMUFD_DIRTY,
    VFIO_USER_PCI,
    QemuVersion,
    release_before,
    release_text,
    since,
)

_RANGE = re.compile(r"^  ([0-9a-f]{16})-([0-9a-f]{16}) ")
_ROOT = re.compile(r"^ Root memory region: (\S+)")


class ScenarioError(DemoError, AssertionError):
    """The scenario cannot be presented faithfully (e.g. a BAR over RAM).

    An ``AssertionError`` too: in a test, what QEMU would not say fails as one.
    """


PCIE0 = "/machine/q35/pcie.0"
PERIPHERAL = "/machine/peripheral"
PERIPHERAL_ANON = "/machine/peripheral-anon"
OBJECTS = "/objects"
#: Containers whose ``qom-list`` the stand-in extends.
CONTAINERS = (PERIPHERAL, PERIPHERAL_ANON, OBJECTS)


@dataclass(frozen=True)
class PciId:
    """Vendor/device/class of a function (``query-pci`` ``id`` and ``class_info``)."""

    vendor: int
    device: int
    class_code: int
    desc: str | None = None  # only classes listed in pci_class_descriptions[] have one


MLX5_VF = PciId(0x15B3, 0x101E, 0x0200, "Ethernet controller")  # ConnectX-6 Dx VF
PDS_VF = PciId(0x1DD8, 0x1003, 0x0200, "Ethernet controller")
QAT_VF = PciId(0x8086, 0x4941, 0x0B40)  # 4xxx VF, co-processor: no description
HISI_VF = PciId(0x19E5, 0xA251, 0x1200)
NVME = PciId(0x144D, 0xA808, 0x0108)


@dataclass(frozen=True)
class Bar:
    """A memory BAR as the guest programmed it, mapped whole (one mmap)."""

    index: int
    address: int
    size: int
    mem64: bool = True
    prefetch: bool = True


@dataclass(frozen=True)
class FabDevice:
    """One VFIO device on the QEMU command line (``-device vfio-pci,host=...``)."""

    id: str | None  # None: anonymous, /machine/peripheral-anon/device[anon_index]
    host: str | None  # host= BDF; None for vfio-user-pci
    devfn: int  # ``addr``: slot << 3 | function
    bus: str = PCIE0
    qom_type: str = "vfio-pci"
    anon_index: int = 0
    enable_migration: str = "auto"  # 8.1+
    x_enable_migration: bool = False  # 5.2-8.0
    device_dirty_page_tracking: str = "on"  # 9.1+
    pre_copy_dirty_page_tracking: str = "on"
    migration_events: bool = False
    iommufd: str | None = None  # iommufd object id
    failover_pair_id: str = ""
    hotplugged: bool = False
    bars: tuple[Bar, ...] = ()
    pci_id: PciId = MLX5_VF
    socket: str = "/run/vfio-user/dev.sock"  # vfio-user-pci only

    @property
    def path(self) -> str:
        if self.id is None:
            return f"{PERIPHERAL_ANON}/device[{self.anon_index}]"
        return f"{PERIPHERAL}/{self.id}"

    @property
    def name(self) -> str:
        """``vbasedev->name``: the host BDF (``vfio_device_get_name``), or
        ``vfio-user:<socket>`` (hw/vfio-user/pci.c)."""
        if self.qom_type == "vfio-user-pci":
            return f"vfio-user:{self.socket}"
        assert self.host is not None, "vfio-pci needs host="
        return self.host

    @property
    def owner(self) -> str:
        """How ``mtree_print_mr_owner`` names the device (``mtree_expand_owner``)."""
        return f"dev id={self.id}" if self.id else f"dev path={self.path}"


@dataclass(frozen=True)
class FabViommu:
    """``-device intel-iommu,caching-mode=on`` (what VFIO needs; hw/i386/intel_iommu.c)."""

    id: str = "viommu0"
    qom_type: str = "intel-iommu"
    aw_bits: int = 48
    caching_mode: bool = True
    dma_translation: bool = True

    @property
    def path(self) -> str:
        return f"{PERIPHERAL}/{self.id}"


@dataclass(frozen=True)
class Scenario:
    """A VM as QEMU ``version`` would show it, and the blockers it would raise."""

    version: QemuVersion
    devices: tuple[FabDevice, ...] = ()
    iommufds: tuple[str, ...] = ()
    viommu: FabViommu | None = None
    blocked_reasons: tuple[str, ...] = field(default=())

    def validate(self) -> None:
        """Refuse a VM QEMU ``version`` could not have been started with."""
        paths = [d.path for d in self.devices]
        assert len(set(paths)) == len(paths), f"duplicate devices: {paths}"
        if self.iommufds:
            assert self.has(IOMMUFD), f"-object iommufd needs QEMU {release_text(IOMMUFD)}"
        for d in self.devices:
            assert d.iommufd is None or d.iommufd in self.iommufds, f"{d.path}: no {d.iommufd}"
            assert d.qom_type != "vfio-user-pci" or self.has(VFIO_USER_PCI), \
                f"vfio-user-pci needs QEMU {release_text(VFIO_USER_PCI)}"
            assert d.device_dirty_page_tracking == "on" or self.has(IOMMUFD_DIRTY), \
                f"x-device-dirty-page-tracking needs QEMU {release_text(IOMMUFD_DIRTY)}"
            assert d.enable_migration == "auto" or self.has(ENABLE_MIGRATION), \
                (f"enable-migration needs QEMU {release_text(ENABLE_MIGRATION)} "
                 f"({release_text(release_before(ENABLE_MIGRATION))} has x-enable-migration)")

    def has(self, first: QemuVersion) -> bool:
        """Whether the scenario's QEMU has what ``first`` (a ``facts.qemu`` release) added."""
        return since(self.version, first)

    def find(self, path: str) -> FabDevice | FabViommu | str | None:
        """The fabricated object at ``path`` (an iommufd object as its id)."""
        for d in self.devices:
            if d.path == path:
                return d
        if self.viommu is not None and self.viommu.path == path:
            return self.viommu
        ident = path.removeprefix(OBJECTS + "/")
        return ident if path.startswith(OBJECTS + "/") and ident in self.iommufds else None


# --- QOM properties ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    """One QOM property: ``qom_type`` as qom-list shows it, ``value_type`` what the
    getter visits (None: no getter), ``first``/``last`` the first and last releases that
    have it (None: every release)."""

    name: str
    qom_type: str
    value_type: str | None
    first: QemuVersion | None = None
    last: QemuVersion | None = None

    def present_in(self, version: QemuVersion) -> bool:
        return ((self.first is None or since(version, self.first))
                and (self.last is None or since(self.last, version)))


_DEVICE_PROPS = (
    Prop("type", "string", "str"), Prop("parent_bus", "link<bus>", "str"),
    Prop("realized", "bool", "bool"), Prop("hotplugged", "bool", "bool"),
    Prop("hotpluggable", "bool", "bool"),
)
_PCI_PROPS = (
    Prop("addr", "str", "int32"), Prop("romfile", "str", "str"),
    Prop("romsize", "uint32", "uint32"), Prop("rombar", "int32", "int32"),
    Prop("multifunction", "bool", "bool"), Prop("failover_pair_id", "str", "str"),
    Prop("acpi-index", "uint32", "uint32"),
)
#: vfio_pci_properties[] (hw/vfio/pci.c) by the /* N.M */ comments; x-enable-migration
#: is 5.2-8.0 (replaced by enable-migration in 8.1, reference §1.7).
_VFIO_PCI_PROPS = (
    Prop("host", "str", "str"), Prop("sysfsdev", "str", "str"),
    Prop("x-pre-copy-dirty-page-tracking", "OnOffAuto", "OnOffAuto", (5, 2, 0)),
    Prop("x-enable-migration", "bool", "bool", (5, 2, 0), release_before(ENABLE_MIGRATION)),
    Prop("enable-migration", "OnOffAuto", "OnOffAuto", ENABLE_MIGRATION),
    Prop("vf-token", "str", "str", (8, 1, 0)),
    Prop("iommufd", "link<iommufd>", "str", IOMMUFD),
    Prop("fd", "string", None, IOMMUFD),
    Prop("x-device-dirty-page-tracking", "OnOffAuto", "OnOffAuto", IOMMUFD_DIRTY),
    Prop("migration-events", "bool", "bool", IOMMUFD_DIRTY),
    Prop("skip-vsc-check", "bool", "bool", (9, 1, 0)),
    Prop("x-migration-multifd-transfer", "OnOffAuto", "OnOffAuto", (10, 0, 0)),
    Prop("x-migration-load-config-after-iter", "OnOffAuto", "OnOffAuto", (10, 1, 0)),
    Prop("x-migration-max-queued-buffers-size", "size", "size", (10, 1, 0)),
)
_VFIO_USER_PROPS = (Prop("socket", "SocketAddress", None, VFIO_USER_PCI),
                    Prop("x-msg-timeout", "uint32", "uint32", VFIO_USER_PCI))
_VIOMMU_PROPS = (Prop("aw-bits", "uint8", "uint8"), Prop("caching-mode", "bool", "bool"),
                 Prop("dma-translation", "bool", "bool"))


def _device_values(d: FabDevice) -> dict[str, object]:
    sysfsdev = f"/sys/bus/pci/devices/{d.host}" if d.host else ""  # set by realize for host=
    return {
        "type": d.qom_type, "parent_bus": d.bus, "realized": True,
        "hotplugged": d.hotplugged, "hotpluggable": True, "addr": d.devfn, "romfile": "",
        "romsize": 2**32 - 1, "rombar": -1, "multifunction": False,
        "failover_pair_id": d.failover_pair_id, "acpi-index": 0,
        "host": d.host or "ffff:ff:ff.f", "sysfsdev": sysfsdev,
        "x-pre-copy-dirty-page-tracking": d.pre_copy_dirty_page_tracking,
        "x-enable-migration": d.x_enable_migration, "enable-migration": d.enable_migration,
        "vf-token": "", "iommufd": f"{OBJECTS}/{d.iommufd}" if d.iommufd else "",
        "x-device-dirty-page-tracking": d.device_dirty_page_tracking,
        "migration-events": d.migration_events, "skip-vsc-check": True,
        "x-migration-multifd-transfer": "auto", "x-migration-load-config-after-iter": "auto",
        "x-migration-max-queued-buffers-size": 2**64 - 1, "x-msg-timeout": 5000,
    }


def properties(obj: FabDevice | FabViommu | str, version: QemuVersion
               ) -> list[tuple[Prop, object]]:
    """The properties ``obj`` has in ``version``, with their values (None: unreadable)."""
    if isinstance(obj, str):  # an iommufd object (backends/iommufd.c: only ``fd``, no getter)
        return [(Prop("type", "string", "str"), "iommufd"), (Prop("fd", "string", None), None)]
    if isinstance(obj, FabViommu):
        values: dict[str, object] = {"type": obj.qom_type, "aw-bits": obj.aw_bits,
                                     "caching-mode": obj.caching_mode,
                                     "dma-translation": obj.dma_translation}
        return [(p, values[p.name]) for p in (_DEVICE_PROPS[0], *_VIOMMU_PROPS)]
    own = _VFIO_USER_PROPS if obj.qom_type == "vfio-user-pci" else _VFIO_PCI_PROPS
    values = _device_values(obj)
    return [(p, values.get(p.name)) for p in (*_DEVICE_PROPS, *_PCI_PROPS, *own)
            if p.present_in(version)]


def type_of(obj: FabDevice | FabViommu | str) -> str:
    if isinstance(obj, str):
        return "iommufd"
    return obj.qom_type


def children(scenario: Scenario, container: str) -> list[dict[str, str]]:
    """The ``qom-list`` entries the scenario adds to ``container``."""
    found: list[dict[str, str]] = []
    for d in scenario.devices:
        parent, name = d.path.rsplit("/", 1)
        if parent == container:
            found.append({"name": name, "type": f"child<{d.qom_type}>"})
    v = scenario.viommu
    if v is not None and container == PERIPHERAL:
        found.append({"name": v.id, "type": f"child<{v.qom_type}>"})
    if container == OBJECTS:
        found += [{"name": i, "type": "child<iommufd>"} for i in scenario.iommufds]
    return found


def machine_type(version: QemuVersion) -> str:
    """``qom-get /machine type`` of the default q35 of ``version``."""
    return f"pc-q35-{version[0]}.{version[1]}-machine"


# --- memory map and PCI -------------------------------------------------------------------


def bar_sections(scenario: Scenario) -> Iterator[tuple[int, int, str]]:
    """(start, end inclusive, rendered line) of every BAR mmap, as mtree prints it."""
    for d in scenario.devices:
        for bar in d.bars:
            end = bar.address + bar.size - 1
            yield bar.address, end, (f"  {bar.address:016x}-{end:016x} (prio 0, ramd): "
                                     f"{d.name} BAR {bar.index} mmaps[0] owner:{{{d.owner}}}")


def pci_entries(scenario: Scenario, bus: str = PCIE0, number: int = 0
                ) -> list[dict[str, object]]:
    """``query-pci`` ``PciDeviceInfo`` of the devices on ``bus`` (QOM path), whose bus
    number is ``number`` (pcie.0: 0; a bridge's: what firmware gave it)."""
    out: list[dict[str, object]] = []
    for d in scenario.devices:
        if d.bus != bus:
            continue
        cls: dict[str, object] = {"class": d.pci_id.class_code}
        if d.pci_id.desc:
            cls["desc"] = d.pci_id.desc
        out.append({
            "bus": number, "slot": d.devfn >> 3, "function": d.devfn & 7, "class_info": cls,
            "id": {"vendor": d.pci_id.vendor, "device": d.pci_id.device,
                   "subsystem-vendor": d.pci_id.vendor, "subsystem": 0},
            "irq_pin": 0, "qdev_id": d.id or "",
            "regions": [{"bar": b.index, "type": "memory", "address": b.address,
                         "size": b.size, "prefetch": b.prefetch, "mem_type_64": b.mem64}
                        for b in d.bars],
        })
    return out


def inject_flat_view(text: str, sections: Sequence[tuple[int, int, str]]) -> str:
    """Add ``sections`` (start, end, line) to every flat view rooted at ``system`` or
    ``memory``, in address order; a section overlapping a real one is a scenario bug."""
    out: list[str] = []
    pending: list[tuple[int, int, str]] = []
    for line in text.splitlines():
        if line.startswith("FlatView #") or not line.strip():
            out += [s[2] for s in pending]
            pending = []
        root = _ROOT.match(line)
        if root and root.group(1) in ("system", "memory"):
            pending = sorted(sections)
        rng = _RANGE.match(line)
        if rng and pending:
            start, end = int(rng.group(1), 16), int(rng.group(2), 16)
            for s, e, _ in pending:
                if s <= end and start <= e:
                    raise ScenarioError(f"BAR {s:#x}-{e:#x} overlaps {line.strip()!r}")
            out += [s[2] for s in pending if s[0] < start]
            pending = [s for s in pending if s[0] > start]
        out.append(line)
    out += [s[2] for s in pending]
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")
