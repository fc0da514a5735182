"""The sans-I/O topology query: what to ask QEMU about one VM, round by round (pure).

Stage: translate. ``TopologyQuery`` says which commands to send (``next_requests``),
takes their replies (``receive``) and ends with a ``VmTopology`` (``result``), in the
manner of h11 (``exchange``). ``qmp/gather.py`` drives it over a session, and
``exchange.drive`` in-process. What to read of which object is ``plan``; how each
reply becomes facts is ``replies``. Must not do I/O, import asyncio/socket/logging/
time/os, or hold a session. Only queries are asked (``qom-list``, ``qom-get``,
``qom-list-get``, ``query-*``, ``human-monitor-command "info mtree -f -o"``).

Rounds (each one batch, sent at once):

1. ``qom-list`` of the four containers, ``query-migrate`` (blocked-reasons) and
   ``qom-get /machine`` ``iommu``; with them, unless the caller passes the ``VmBasics``
   it read for ``info`` (then the topology's are the same value), ``query-version``
   (unless the caller knows the version), ``query-memory-size-summary`` and ``qom-get
   /machine`` ``type``;
2. only when VFIO devices were found: ``query-pci``, ``query-memory-devices`` and the
   flat view; they decide DMA-logging ranges and nothing else;
3. the properties of the VFIO devices and vIOMMUs: one ``qom-list-get`` on QEMU >= 10.1,
   before that one ``qom-get`` per property;
4. one round per bus level between the VFIO devices and their host bridges (one for root
   ports on ``pcie.0``, one more per pxb or switch level), read the same way.

Only VFIO devices, vIOMMUs and the bridges above VFIO devices are read, never every
device. Measured on 10.0.2 (q35, -S, 11 devices, intel-iommu; test_topology_real): 12
commands in 2 rounds, 7 ms, without VFIO devices; with 6 devices read as VFIO, 96
commands in 4 rounds, ~33 ms. Given ``basics``, 3 commands fewer.

A refresh (``previous``: the last ``Gathered``) of a VM without VFIO devices asks only
``query-migrate`` and the ``MUTABLE_CONTAINERS``: such a VM can only gain a VFIO device
as a new child there. The same children: the previous topology with QEMU's current
blocked-reasons (4 commands, not 12, per refresh of every VM of a host with hundreds,
issue 5). Otherwise everything is gathered again.

Failure: a container QEMU never created lists no children; a property QEMU lacks is
None; a failed ``qom-get /machine`` leaves the machine (or its built-in vIOMMU) unknown;
a failed flat view leaves ``flat_view`` None with the reason. Any other error reply
raises ``QmpCommandError`` from ``receive`` (a device unplugged mid-gather:
``DeviceNotFound``): gather again. A reply of the wrong shape raises ``QmpReplyError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.topology import VFIO_TYPES, FlatSection, MemoryDevice, PciBar, VmTopology
from qmpdirty.facts.vm import VmBasics
from qmpdirty.qmp.topology import plan
from qmpdirty.qmp.topology.exchange import Answers, Failed, Query, Request, Steps, returned
from qmpdirty.qmp.topology.replies import (
    BusOwner,
    QomChild,
    blocked_reasons_from,
    bus_owner_from,
    children_from,
    flat_view_from,
    is_absent_property,
    machine_viommu,
    memory_devices_from,
    pci_bars_from,
    properties_from_list_get,
    viommu_from,
)
from qmpdirty.qmp.translate import basics_from, machine_from, version_from

#: ``-device`` with and without ``id=``: where device_add puts devices.
PERIPHERALS = (plan.PERIPHERAL, plan.PERIPHERAL_ANON)
#: The containers whose children can change at run time: device_add / device_del
#: (peripheral, peripheral-anon) and object-add / object-del (objects). Children of
#: /machine/unattached are created by the machine and never come or go afterwards.
MUTABLE_CONTAINERS = (*PERIPHERALS, plan.OBJECTS)
#: The flat memory view (``commands.READ_ONLY_HMP``); optional: ranges then unknown.
FLAT_VIEW = Request("human-monitor-command", {"command-line": "info mtree -f -o"},
                    optional=True)
NOT_GATHERED = ("unknown: not gathered: the VM has no VFIO device (the flat view only "
                "decides DMA-logging ranges)")

Listed = Mapping[str, tuple[QomChild, ...]]
Properties = dict[str, dict[str, object]]


@dataclass(frozen=True, slots=True)
class Gathered:
    """A finished gather: what a later ``TopologyQuery(previous=...)`` refreshes from."""

    topology: VmTopology
    #: children of ``MUTABLE_CONTAINERS`` only, what a refresh compares: /machine/unattached
    #: alone lists ~200 children per VM (13 MiB at 1,000 VMs, measured with tracemalloc)
    listed: Listed

    @property
    def peripherals(self) -> frozenset[QomChild]:
        """The children of peripheral and peripheral-anon."""
        return frozenset(c for name in PERIPHERALS for c in self.listed.get(name, ()))


class TopologyQuery(Query[VmTopology]):
    """Everything about one VM that decides VFIO dirty tracking and its ranges.

    ``device_types``: the QOM types gathered as devices (VFIO's; tests on machines
    without VFIO pass stand-ins such as ``virtio-net-pci``). ``version``: the QEMU
    version when the caller knows it (not asked again). ``basics``: the VM's version,
    machine and RAM as the caller last read them (the daemon's ``VmInfo.basics``): not
    asked again, and the topology's basics are that value (``version`` is then its).
    ``previous``: the last gather of this VM, for a cheap refresh. Once finished,
    ``gathered`` is the next one's.
    """

    def __init__(self, device_types: frozenset[str] = VFIO_TYPES, *,
                 version: QemuVersion | None = None, basics: VmBasics | None = None,
                 previous: Gathered | None = None) -> None:
        self.gathered: Gathered | None = None
        super().__init__(self._rounds(device_types, version, basics, previous))

    def _rounds(self, device_types: frozenset[str], version: QemuVersion | None,
                basics: VmBasics | None, previous: Gathered | None) -> Steps[VmTopology]:
        if previous is not None and not previous.topology.devices:
            self.gathered = yield from _refresh(previous, basics)
        if self.gathered is None:
            self.gathered = yield from _gather(device_types, version, basics)
        return self.gathered.topology


class ListingQuery(Query[dict[str, tuple[QomChild, ...]]]):
    """The children of ``containers`` in QEMU's order: one ``qom-list`` each, one round."""

    def __init__(self, containers: Sequence[str]) -> None:
        super().__init__(_listings(tuple(containers)))


def _listings(containers: tuple[str, ...]) -> Steps[dict[str, tuple[QomChild, ...]]]:
    if not containers:
        return {}
    batch = [listing_request(c) for c in containers]
    answers = Answers(batch, (yield batch))
    return {c: children_in(answers, c) for c in containers}


def listing_request(container: str) -> Request:
    """``qom-list`` of one container (``children_in`` reads its reply)."""
    return Request("qom-list", {"path": container})


def children_in(answers: Answers, container: str) -> tuple[QomChild, ...]:
    """The next reply as a container's children; a container QEMU never created is empty."""
    request, reply = answers.take()
    if isinstance(reply, Failed) and reply.error_class == "DeviceNotFound":
        return ()
    return children_from(container, returned(request, reply))


def _refresh(previous: Gathered, basics: VmBasics | None) -> Steps[Gathered | None]:
    """The previous gather with QEMU's current blocked-reasons (and ``basics`` when given);
    None when children changed."""
    batch = [Request("query-migrate"), *(listing_request(c) for c in MUTABLE_CONTAINERS)]
    answers = Answers(batch, (yield batch))
    migrate = answers.value()
    listed = {c: children_in(answers, c) for c in MUTABLE_CONTAINERS}
    if any(listed[c] != previous.listed.get(c) for c in MUTABLE_CONTAINERS):
        return None
    return dataclasses.replace(previous, topology=dataclasses.replace(
        previous.topology, blocked_reasons=blocked_reasons_from(migrate),
        basics=basics or previous.topology.basics))


def _gather(device_types: frozenset[str], version: QemuVersion | None,
            basics: VmBasics | None) -> Steps[Gathered]:
    """Everything, in the rounds of the module docstring."""
    if basics is not None:
        version = basics.version
    batch = [
        *([Request("query-version")] if version is None else []),
        *(listing_request(c) for c in plan.CONTAINERS),
        Request("query-migrate"), *(_BASICS if basics is None else []), _machine("iommu"),
    ]
    answers = Answers(batch, (yield batch))
    if version is None:
        version = version_from(answers.value())
    listed = {c: children_in(answers, c) for c in plan.CONTAINERS}
    blocked_reasons = blocked_reasons_from(answers.value())
    if basics is None:
        memory = answers.value()
        machine_type, _ = answers.optional()
        basics = basics_from(version, machine_from(machine_type), memory)
    machine_iommu, _ = answers.optional()
    targets = plan.targets_from([c for name in plan.CONTAINERS for c in listed[name]],
                                device_types)
    memory_map = (yield from _memory_map()) if targets.devices else _MemoryMap()
    properties = yield from _read(version, plan.wanted_properties(targets, version))
    owners = yield from _walk_buses(version, plan.device_buses(targets.devices, properties),
                                    targets.expander_ids())
    viommus = sorted((viommu_from(c, properties.get(c.path, {})) for c in targets.viommus),
                     key=lambda v: v.qom_path)
    built_in = machine_viommu(machine_iommu, viommus)
    topology = VmTopology(
        basics=basics,
        devices=plan.devices_from(targets, properties, owners),
        iommufd_objects=tuple(sorted(c.path for c in targets.iommufds)),
        viommus=(*viommus, built_in) if built_in else tuple(viommus),
        memory_devices=memory_map.devices,
        flat_view=memory_map.flat_view,
        flat_view_source=memory_map.flat_view_source,
        pci_bars=memory_map.pci_bars,
        blocked_reasons=blocked_reasons,
    )
    return Gathered(topology, {c: listed[c] for c in MUTABLE_CONTAINERS})


def _machine(name: str) -> Request:
    return Request("qom-get", {"path": "/machine", "property": name}, optional=True)


#: What ``VmBasics`` is read from besides the version (``queries.gather_info`` asks the same).
_BASICS = (Request("query-memory-size-summary"), _machine("type"))


@dataclass(frozen=True, slots=True)
class _MemoryMap:
    """The replies that decide DMA-logging ranges only (none without VFIO devices)."""

    pci_bars: tuple[PciBar, ...] = ()
    devices: tuple[MemoryDevice, ...] = ()
    flat_view: tuple[FlatSection, ...] | None = None
    flat_view_source: str = NOT_GATHERED


def _memory_map() -> Steps[_MemoryMap]:
    """``query-pci``, ``query-memory-devices`` and the flat view."""
    batch = [Request("query-pci"), Request("query-memory-devices"), FLAT_VIEW]
    answers = Answers(batch, (yield batch))
    pci_bars, devices = pci_bars_from(answers.value()), memory_devices_from(answers.value())
    text, failure = answers.optional()
    flat_view, source = ((None, f"unknown: {failure}") if failure is not None
                         else flat_view_from(text))
    return _MemoryMap(pci_bars, devices, flat_view, source)


def _read(version: QemuVersion, wanted: Mapping[str, Sequence[str]]) -> Steps[Properties]:
    """path -> the wanted properties it has: one qom-list-get, or a qom-get per property."""
    paths = sorted(wanted)
    if not paths:
        return {}
    if plan.uses_qom_list_get(version):
        batch = [Request("qom-list-get", {"paths": paths})]
        every = properties_from_list_get(paths, Answers(batch, (yield batch)).value())
        return {p: {n: v for n, v in every[p].items() if n in wanted[p]} for p in paths}
    pairs = [(p, n) for p in paths for n in wanted[p]]
    batch = [Request("qom-get", {"path": p, "property": n}) for p, n in pairs]
    answers = Answers(batch, (yield batch))
    read: Properties = {p: {} for p in paths}
    for path, name in pairs:
        request, reply = answers.take()
        if isinstance(reply, Failed) and is_absent_property(reply.error_class or "", reply.desc):
            continue  # this QEMU does not have the property
        read[path][name] = returned(request, reply)
    return read


def _walk_buses(version: QemuVersion, buses: Sequence[str | None],
                expanders: Mapping[str, str]) -> Steps[dict[str, BusOwner]]:
    """Read the devices providing ``buses``, then theirs, up to the host bridges."""
    owners: dict[str, BusOwner] = {}
    frontier = plan.next_owners(buses, owners, expanders)
    for _ in range(plan.MAX_BUS_DEPTH):
        if not frontier:
            break
        props = yield from _read(version, dict.fromkeys(frontier, plan.BUS_OWNER_PROPERTIES))
        read = [bus_owner_from(path, props[path]) for path in frontier]
        owners.update((owner.path, owner) for owner in read)
        frontier = plan.next_owners(plan.buses_above(read), owners, expanders)
    return owners
