"""What to read of which QOM object for a VM's topology, and the devices' order (pure).

Stage: translate. Chooses the QOM objects and properties the topology query
(``query``) reads, per type and QEMU version, follows PCI buses up to their host
bridge and estimates the realize order of the VFIO devices from ``replies`` values.
Must not do I/O, import asyncio/socket/logging/time/os, or hold a session.

**vIOMMU bypass** (hw/pci/pci.c ``pci_bus_bypass_iommu``): a device's bus leads, via
the device providing each bus (a bridge, whose own ``parent_bus`` goes on up), to a
root bus whose provider is a PCI host bridge; that host bridge's ``bypass-iommu``
decides. Host bridges are recognised by having ``bypass-iommu`` at all.

**Realize order** (QEMU does not expose it; QOM child lists are hash-ordered):

1. cold-plugged devices (``hotplugged`` false) before hot-plugged ones;
2. within each, by PCI placement: root bus (natural order of its QOM path), then the
   devfns from the root bus down to the device; a ``pxb``/``pxb-pcie`` root bus counts
   as sitting at its expander device's slot (the bus is named after the expander's
   id). Cold-plugged devices without ``addr=`` get the lowest free slot of their bus
   in command-line order, and libvirt numbers controllers and slots in device order,
   so this usually matches; an out-of-order ``addr=``, an anonymous expander or
   hot-plugged devices with ids make it an approximation;
3. anonymous devices (``/machine/peripheral-anon/device[N]``) keep their exact
   relative order: N is QEMU's creation counter (hot-plugged ones get later N), so
   the positions step 2 gave them are refilled in N order.

Non-PCI devices (vfio-ap, vfio-ccw) sort after PCI ones, by path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qmpdirty.facts.qemu import (
    ENABLE_MIGRATION,
    IOMMUFD,
    IOMMUFD_DIRTY,
    QOM_LIST_GET,
    QemuVersion,
    since,
)
from qmpdirty.facts.topology import VfioDevice
from qmpdirty.qmp.topology import replies as tw

PERIPHERAL = tw.PERIPHERAL
PERIPHERAL_ANON = tw.PERIPHERAL_ANON
UNATTACHED = "/machine/unattached"
OBJECTS = "/objects"
#: ``-device`` with and without ``id=``, machine-created devices, ``-object``.
CONTAINERS = (PERIPHERAL, PERIPHERAL_ANON, UNATTACHED, OBJECTS)

VIOMMU_TYPES = frozenset({"intel-iommu", "amd-iommu", "virtio-iommu-pci", "arm-smmuv3"})
#: PCI expander bridges: each creates a root bus named after its id (pci_expander_bridge.c).
EXPANDER_TYPES = frozenset({"pxb", "pxb-pcie", "pxb-cxl"})
_NON_PCI_VFIO = frozenset({"vfio-ap", "vfio-ccw"})
#: vIOMMU properties as QEMU 10.0.2 has them: ``dma-translation`` is intel-iommu's own
#: (hw/i386/intel_iommu.c); amd-iommu and arm-smmuv3 have none of the three.
_VIOMMU_PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "intel-iommu": ("aw-bits", "caching-mode", "dma-translation"),
    "virtio-iommu-pci": ("aw-bits",),
}
#: Read of every device between a PCI bus and its host bridge.
BUS_OWNER_PROPERTIES = ("bypass-iommu", "parent_bus", "addr")
#: Deepest bus nesting followed (deeper means a loop or a broken peer).
MAX_BUS_DEPTH = 16
_ANON_INDEX = re.compile(r"^/machine/peripheral-anon/device\[(\d+)\]$")


# --- what to ask ---------------------------------------------------------------------------


def uses_qom_list_get(version: QemuVersion) -> bool:
    """QEMU >= 10.1: one ``qom-list-get`` for many objects, not a ``qom-get`` per property."""
    return since(version, QOM_LIST_GET)


def vfio_properties(qom_type: str, version: QemuVersion) -> tuple[str, ...]:
    """The properties read of one VFIO device (the PCI ones only of PCI types)."""
    names = ["parent_bus", "hotplugged", "sysfsdev"]
    if since(version, IOMMUFD):
        names.append("iommufd")
    if qom_type not in _NON_PCI_VFIO:
        names += ["host", "addr", "failover_pair_id", "x-pre-copy-dirty-page-tracking"]
        names.append("enable-migration" if since(version, ENABLE_MIGRATION)
                     else "x-enable-migration")
        if since(version, IOMMUFD_DIRTY):
            names += ["x-device-dirty-page-tracking", "migration-events"]
    return tuple(names)


@dataclass(frozen=True, slots=True)
class Targets:
    """The children that matter: VFIO devices, vIOMMUs, iommufd objects."""

    devices: tuple[tw.QomChild, ...] = ()
    viommus: tuple[tw.QomChild, ...] = ()
    iommufds: tuple[tw.QomChild, ...] = ()
    expanders: tuple[tw.QomChild, ...] = ()  # pxb devices with an id

    def expander_ids(self) -> dict[str, str]:
        """Expander id (= the name of the bus it creates) -> its QOM path."""
        return {c.path.rsplit("/", 1)[-1]: c.path for c in self.expanders}


def targets_from(children: Sequence[tw.QomChild], device_types: frozenset[str]) -> Targets:
    """VFIO devices under peripheral(-anon); vIOMMUs there or machine-created; iommufds."""
    def under(child: tw.QomChild, *containers: str) -> bool:
        return child.path.rsplit("/", 1)[0] in containers

    return Targets(
        devices=tuple(c for c in children if c.qom_type in device_types
                      and under(c, PERIPHERAL, PERIPHERAL_ANON)),
        viommus=tuple(c for c in children if c.qom_type in VIOMMU_TYPES
                      and under(c, PERIPHERAL, PERIPHERAL_ANON, UNATTACHED)),
        iommufds=tuple(c for c in children if c.qom_type == "iommufd" and under(c, OBJECTS)),
        expanders=tuple(c for c in children if c.qom_type in EXPANDER_TYPES
                        and under(c, PERIPHERAL)),
    )


def wanted_properties(targets: Targets, version: QemuVersion) -> dict[str, tuple[str, ...]]:
    """QOM path -> the properties to read of it."""
    wanted = {c.path: vfio_properties(c.qom_type, version) for c in targets.devices}
    for c in targets.viommus:
        if names := _VIOMMU_PROPERTIES.get(c.qom_type, ()):
            wanted[c.path] = names
    return wanted


def owner_of(bus_path: str) -> str:
    """The device providing a bus: a bus is a QOM child of its parent device."""
    return bus_path.rstrip("/").rsplit("/", 1)[0]


def next_owners(buses: Sequence[str | None], known: Mapping[str, tw.BusOwner],
                expanders: Mapping[str, str]) -> list[str]:
    """Providers of ``buses`` not read yet, plus the expander a bus is named after."""
    paths = {owner_of(b) for b in buses if b}
    paths.update(expanders[name] for b in buses if b
                 and (name := b.rsplit("/", 1)[-1]) in expanders)
    return sorted(p for p in paths if p not in known and p)


def buses_above(owners: Sequence[tw.BusOwner]) -> list[str | None]:
    """The buses the just-read providers sit on, unless they are host bridges."""
    return [o.parent_bus for o in owners if o.bypass_iommu is None]


# --- placement and realize order -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Root bus reached, devfns from it down to the device, host bridge bypass."""

    root_bus: str | None = None  # None: no PCI host bridge reached
    devfns: tuple[int, ...] = ()
    bypass_iommu: bool | None = None


def placement_of(bus: str | None, devfn: int | None, owners: Mapping[str, tw.BusOwner],
                 expanders: Mapping[str, str]) -> Placement:
    """Follow bus -> providing device -> its bus ... up to a host bridge, whose
    ``bypass-iommu`` decides; for the order, go on from a pxb root bus to its expander."""
    chain = [] if devfn is None else [devfn]
    bypass: bool | None = None
    root: str | None = None
    via: str | None = None
    for _ in range(MAX_BUS_DEPTH):
        owner = owners.get(owner_of(bus)) if bus else None
        if bus is None or owner is None:
            break
        via = expanders.get(bus.rsplit("/", 1)[-1], via)
        if owner.bypass_iommu is not None:
            bypass = owner.bypass_iommu if root is None else bypass
            root, owner, via = bus, owners.get(via or ""), None
            if owner is None:
                break
        if owner.devfn is not None:
            chain.insert(0, owner.devfn)
        bus = owner.parent_bus
    return Placement(root, tuple(chain), bypass)


def _natural(text: str) -> tuple[tuple[int, str], ...]:
    """``device[10]`` after ``device[9]``."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", text) if p)


def _anon_counter(path: str) -> int | None:
    match = _ANON_INDEX.match(path)
    return int(match.group(1)) if match else None


def realize_order(paths: Sequence[str], hotplugged: Sequence[bool | None],
                  placements: Sequence[Placement]) -> list[int]:
    """Each device's estimated realize index (see the module docstring)."""
    def key(i: int) -> tuple[object, ...]:
        p = placements[i]
        return (bool(hotplugged[i]), not p.devfns, _natural(p.root_bus or ""), p.devfns,
                _natural(paths[i]))

    order = sorted(range(len(paths)), key=key)
    counters = [_anon_counter(p) for p in paths]
    refill = iter(sorted((i for i in order if counters[i] is not None),
                         key=lambda i: counters[i] or 0))
    order = [next(refill) if counters[i] is not None else i for i in order]
    index = [0] * len(paths)
    for position, i in enumerate(order):
        index[i] = position
    return index


# --- the devices -------------------------------------------------------------------------


def device_buses(devices: Sequence[tw.QomChild], properties: Mapping[str, Mapping[str, object]]
                 ) -> list[str | None]:
    """The buses the PCI devices among ``devices`` sit on (where the bus walk starts)."""
    return [tw.parent_bus_of(c.path, properties.get(c.path, {}))
            for c in devices if "addr" in properties.get(c.path, {})]


def devices_from(targets: Targets, properties: Mapping[str, Mapping[str, object]],
                 owners: Mapping[str, tw.BusOwner]) -> tuple[VfioDevice, ...]:
    """The VFIO devices, in estimated realize order."""
    children = targets.devices
    props = [properties.get(c.path, {}) for c in children]
    placements = [
        placement_of(tw.parent_bus_of(c.path, p), tw.devfn_of(c.path, p), owners,
                     targets.expander_ids())
        if "addr" in p else Placement()
        for c, p in zip(children, props, strict=True)
    ]
    hotplugged = [tw.hotplugged_of(c.path, p) for c, p in zip(children, props, strict=True)]
    order = realize_order([c.path for c in children], hotplugged, placements)
    devices = [
        tw.vfio_device_from(c, p, bypass_iommu=pl.bypass_iommu, realize_index=i)
        for c, p, pl, i in zip(children, props, placements, order, strict=True)
    ]
    return tuple(sorted(devices, key=lambda d: d.realize_index))
