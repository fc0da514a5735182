"""QOM, PCI and memory replies -> topology values (pure core).

Stage: translate. Validates each raw reply the topology query received with a strict
``wire`` model (shapes from qapi/qom.json, pci.json, machine.json) and turns it into
``facts.topology`` values. A wrong shape becomes ``QmpReplyError``, never another
exception. Must not do I/O, import asyncio/socket/logging/time/os, or hold a session;
what to ask and how the pieces are put together is ``plan`` and ``query``.

Verified on QEMU 10.0.2 (``qemu-system-x86_64 -M q35``):

* ``qom-get addr`` is the devfn as an integer (``32`` = slot 4 function 0; -1 when
  unassigned); ``parent_bus`` (``link<bus>``) is the bus's QOM path, and a bus is a QOM
  child of the device providing it (``/machine/peripheral/rp1/rp1``).
* An unset string or link property reads as ``""`` (``iommufd``, ``sysfsdev``,
  ``failover_pair_id``); vfio-pci's unset ``host`` reads as ``ffff:ff:ff.f``.
* A property this QEMU lacks: ``GenericError`` "Property 'TYPE.NAME' not found".
* ``query-pci`` reports an unassigned BAR with ``address`` -1 (``PCI_BAR_UNMAPPED``);
  devices behind a bridge appear only once firmware gave it a secondary bus number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError

from qmpdirty.errors import QmpReplyError
from qmpdirty.facts.topology import (
    FlatSection,
    MemoryDevice,
    OnOffAuto,
    PciBar,
    VfioDevice,
    Viommu,
)
from qmpdirty.qmp import wire
from qmpdirty.qmp.topology.mtree import flat_view_for
from qmpdirty.qmp.translate import parse_reply, parse_reply_list

_T = TypeVar("_T")
_ABSENT = re.compile(r"^Property '[^']*' not found$")
#: ``-device`` with ``id=`` (``/machine/peripheral/<id>``) and without (``device[N]``).
PERIPHERAL = "/machine/peripheral"
PERIPHERAL_ANON = "/machine/peripheral-anon"


@dataclass(frozen=True, slots=True)
class QomChild:
    """A child object found by ``qom-list``: its path and QOM type."""

    path: str
    qom_type: str


@dataclass(frozen=True, slots=True)
class BusOwner:
    """A device providing a bus, read on the way up from a device to its host bridge."""

    path: str
    bypass_iommu: bool | None  # only PCI host bridges have ``bypass-iommu``
    parent_bus: str | None
    devfn: int | None


# --- QOM ---------------------------------------------------------------------------------


def children_from(container: str, reply: object) -> tuple[QomChild, ...]:
    """``qom-list CONTAINER`` -> its ``child<TYPE>`` entries."""
    entries = parse_reply_list(wire.ObjectPropertyInfo, f"qom-list {container}", reply)
    return tuple(
        QomChild(f"{container}/{e.name}", e.type[len("child<"):-1])
        for e in entries
        if e.type.startswith("child<") and e.type.endswith(">")
    )


def owner_name(child: QomChild) -> str:
    """How ``info mtree -o`` names a device as a region's owner: its id (``owner:{dev
    id=X}``: the name under /machine/peripheral), else its QOM path (``dev path=...``)."""
    parent, name = child.path.rsplit("/", 1)
    return name if parent == PERIPHERAL else child.path


def is_absent_property(error_class: str, desc: str) -> bool:
    """The error QEMU answers ``qom-get`` with for a property it does not have."""
    return error_class == "GenericError" and _ABSENT.match(desc) is not None


def properties_from_list_get(paths: Sequence[str], reply: object) -> dict[str, dict[str, object]]:
    """``qom-list-get`` (10.1+) -> path -> name -> value; unreadable values are left out."""
    results = parse_reply_list(wire.ObjectPropertiesValues, "qom-list-get", reply)
    if len(results) != len(paths):
        raise QmpReplyError(f"qom-list-get: {len(results)} results for {len(paths)} paths")
    return {
        path: {p.name: p.value for p in result.properties if p.value is not None}
        for path, result in zip(paths, results, strict=True)
    }


_STR: TypeAdapter[str] = TypeAdapter(StrictStr)
_BOOL: TypeAdapter[bool] = TypeAdapter(StrictBool)
_INT: TypeAdapter[int] = TypeAdapter(StrictInt)
_ON_OFF_AUTO: TypeAdapter[OnOffAuto] = TypeAdapter(Literal["on", "off", "auto"])


def _value(props: Mapping[str, object], name: str, adapter: TypeAdapter[_T], path: str
           ) -> _T | None:
    """A property's value, None when the object does not have it."""
    if name not in props:
        return None
    try:
        return adapter.validate_python(props[name])
    except ValidationError as exc:
        raise QmpReplyError(f"qom-get {path} {name}: unexpected value {props[name]!r}") from exc


def _text(props: Mapping[str, object], name: str, path: str) -> str | None:
    """A string or link property; QEMU reports an unset one as ``""``."""
    return _value(props, name, _STR, path) or None


def parent_bus_of(path: str, props: Mapping[str, object]) -> str | None:
    return _text(props, "parent_bus", path)


def hotplugged_of(path: str, props: Mapping[str, object]) -> bool | None:
    return _value(props, "hotplugged", _BOOL, path)


def devfn_of(path: str, props: Mapping[str, object]) -> int | None:
    """``addr`` as devfn; None when unassigned (-1) or not a PCI device."""
    devfn = _value(props, "addr", _INT, path)
    return devfn if devfn is not None and devfn >= 0 else None


def bus_owner_from(path: str, props: Mapping[str, object]) -> BusOwner:
    return BusOwner(path, _value(props, "bypass-iommu", _BOOL, path),
                    parent_bus_of(path, props), devfn_of(path, props))


def vfio_device_from(child: QomChild, props: Mapping[str, object], *,
                     bypass_iommu: bool | None, realize_index: int) -> VfioDevice:
    """One VFIO device from its properties (a property QEMU lacks stays None)."""
    path = child.path
    devfn = devfn_of(path, props)
    return VfioDevice(
        qom_path=path, qom_type=child.qom_type,
        id=None if path.startswith(PERIPHERAL_ANON + "/") else path.rsplit("/", 1)[-1],
        host=_text(props, "host", path), sysfsdev=_text(props, "sysfsdev", path),
        enable_migration=_value(props, "enable-migration", _ON_OFF_AUTO, path),
        x_enable_migration=_value(props, "x-enable-migration", _BOOL, path),
        device_dirty_page_tracking=_value(props, "x-device-dirty-page-tracking",
                                          _ON_OFF_AUTO, path),
        pre_copy_dirty_page_tracking=_value(props, "x-pre-copy-dirty-page-tracking",
                                            _ON_OFF_AUTO, path),
        migration_events=_value(props, "migration-events", _BOOL, path),
        iommufd=_text(props, "iommufd", path),
        failover_pair_id=_text(props, "failover_pair_id", path),
        pci_addr=None if devfn is None else f"{devfn >> 3:02x}.{devfn & 7:x}",
        bus=parent_bus_of(path, props),
        root_bus_bypass_iommu=bypass_iommu,
        realize_index=realize_index,
    )


def viommu_from(child: QomChild, props: Mapping[str, object]) -> Viommu:
    path = child.path
    return Viommu(path, child.qom_type, aw_bits=_value(props, "aw-bits", _INT, path),
                  caching_mode=_value(props, "caching-mode", _BOOL, path),
                  dma_translation=_value(props, "dma-translation", _BOOL, path))


def machine_viommu(machine_iommu: object, found: Sequence[Viommu]) -> Viommu | None:
    """arm ``virt``: ``qom-get /machine iommu`` is ``smmuv3``/``virtio``/``none``. A
    built-in SMMU not found as an ``arm-smmuv3`` child is reported as ``machine:smmuv3``
    (``virtio`` only describes a user-added virtio-iommu-pci, found as a device)."""
    if machine_iommu is None:
        return None
    kind = _value({"iommu": machine_iommu}, "iommu", _STR, "/machine")
    if kind != "smmuv3" or any(v.qom_type == "arm-smmuv3" for v in found):
        return None
    return Viommu("/machine", "machine:smmuv3")


# --- queries -----------------------------------------------------------------------------


def _bars(device: wire.PciDeviceInfo) -> list[PciBar]:
    bars = [
        PciBar(qdev_id=device.qdev_id or None, bus=device.bus, slot=device.slot,
               function=device.function, bar=r.bar,
               kind="io" if r.type == "io" else "memory", address=r.address, size=r.size,
               mem_type_64=r.mem_type_64, prefetch=r.prefetch)
        for r in device.regions if r.address != -1
    ]
    for child in device.pci_bridge.devices if device.pci_bridge else ():
        bars += _bars(child)
    return bars


def pci_bars_from(reply: object) -> tuple[PciBar, ...]:
    """``query-pci``: every assigned BAR on every bus, bridges' devices included."""
    buses = parse_reply_list(wire.PciInfo, "query-pci", reply)
    return tuple(bar for bus in buses for device in bus.devices for bar in _bars(device))


def memory_devices_from(reply: object) -> tuple[MemoryDevice, ...]:
    """``query-memory-devices``; hv-balloon reports no plugged size (``size`` 0)."""
    infos = parse_reply_list(wire.MemoryDeviceInfo, "query-memory-devices", reply)
    return tuple(
        MemoryDevice(kind=i.type, id=i.data.id,
                     addr=i.data.addr if i.data.addr is not None else i.data.memaddr,
                     size=i.data.size or 0, max_size=i.data.max_size, memdev=i.data.memdev)
        for i in infos
    )


def blocked_reasons_from(reply: object) -> tuple[str, ...]:
    """``query-migrate`` -> ``blocked-reasons``, QEMU's text verbatim."""
    return tuple(parse_reply(wire.MigrationInfo, "query-migrate", reply).blocked_reasons)


def text_from(reply: object) -> str:
    """An HMP command's reply (``human-monitor-command`` returns the text it printed)."""
    if not isinstance(reply, str):
        raise QmpReplyError(f"human-monitor-command: expected text, got {type(reply).__name__}")
    return reply


def flat_view_from(reply: object) -> tuple[tuple[FlatSection, ...] | None, str]:
    """``info mtree -f -o`` text -> the view of address space ``memory``, and its source."""
    sections = flat_view_for(text_from(reply), "memory")
    if sections is None:
        return None, 'unknown: no flat view of address space "memory" in info mtree -f -o'
    return sections, "info mtree -f -o"
