"""Gather one VM's VFIO topology over QMP (shell).

Stage: shell. Asks QEMU, through ``QmpSession.execute`` only (allow-list, timeouts),
for what ``topology_plan`` says is needed and hands the raw replies to it; all
validation and translation happen there and in ``topology_wire``. Must not interpret
replies itself, send anything but queries (``qom-list``, ``qom-get``, ``qom-list-get``,
``query-*``, ``human-monitor-command "info mtree -f -o"``). ``gather_topology`` keeps no
state; ``TopologyReader`` (one per session) keeps the last gather to refresh cheaply.

Round trips: one concurrent batch (version, the four QOM containers, query-pci,
query-memory-devices, query-migrate, query-memory-size-summary, machine type and
``iommu``, the flat view), one for the properties of VFIO devices and vIOMMUs, then
one per bus level between them and their host bridges (one for root ports on
``pcie.0``, one more per pxb or switch level). On QEMU >= 10.1 each of the later steps
is a single ``qom-list-get``; before, one ``qom-get`` per property, all of a step sent
at once. Only VFIO devices, vIOMMUs and the bridges above VFIO devices are read, never
every device. Measured on 10.0.2 (q35, -S, 11 devices): 15 commands in 2 waves, 8 ms
without VFIO devices; with 6 devices read as VFIO, 96 commands in 3 waves, ~35 ms.

Failure: a property QEMU lacks is None; a failed ``info mtree`` leaves ``flat_view``
None with the reason; any other error (e.g. a device unplugged mid-gather:
``DeviceNotFound``) propagates as qmpdirty's ``QmpError``: gather again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

from qmpdirty.errors import CommandNotAllowed, QmpCommandError, QmpTimeoutError
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.topology import VFIO_TYPES, VmTopology
from qmpdirty.qmp import translate
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology import plan
from qmpdirty.qmp.topology import replies as tw

Properties = dict[str, dict[str, object]]
MTREE = {"command-line": "info mtree -f -o"}


async def gather_topology(
    session: QmpSession, *, device_types: frozenset[str] = VFIO_TYPES
) -> VmTopology:
    """Everything about the VM that decides VFIO dirty tracking and its ranges.

    ``device_types``: the QOM types gathered as devices (VFIO's; tests on machines
    without VFIO pass stand-ins such as ``virtio-net-pci``).
    """
    gathered, _ = await _gather(session, device_types)
    return plan.topology_from(gathered)


#: The containers whose children can change at run time: device_add / device_del
#: (peripheral, peripheral-anon) and object-add / object-del (objects). Children of
#: /machine/unattached are created by the machine and never come or go afterwards.
MUTABLE_CONTAINERS = (plan.PERIPHERAL, plan.PERIPHERAL_ANON, plan.OBJECTS)


class TopologyReader:
    """One VM's topology, refreshed cheaply while it has no VFIO device (one per session).

    Such a VM can only gain one through a new child of a ``MUTABLE_CONTAINERS`` entry;
    its version, machine type, vIOMMUs and machine-created children stay as they were.
    So while it has no VFIO device and those containers list the same children, a
    refresh asks for them and ``query-migrate`` (blocked-reasons) only: 4 commands, not
    12, at every refresh of every VM of a host that has hundreds (issue 5). Anything
    else, or ``full=True`` (a topology event), gathers everything again.
    """

    def __init__(self, session: QmpSession, *, device_types: frozenset[str] = VFIO_TYPES
                 ) -> None:
        self._session = session
        self._types = device_types
        self._last: plan.Gathered | None = None
        self._listed: dict[str, tuple[tw.QomChild, ...]] = {}

    @property
    def peripherals(self) -> frozenset[tw.QomChild]:
        """The children of peripheral and peripheral-anon at the last read."""
        return frozenset(c for name in (plan.PERIPHERAL, plan.PERIPHERAL_ANON)
                         for c in self._listed.get(name, ()))

    async def read(self, *, full: bool = False) -> VmTopology:
        last = self._last
        if not full and last is not None and not last.targets.devices:
            listed, migrate = await asyncio.gather(
                _listings(self._session, MUTABLE_CONTAINERS),
                self._session.execute("query-migrate"))
            if all(listed[c] == self._listed.get(c) for c in MUTABLE_CONTAINERS):
                self._last = dataclasses.replace(last, migrate=migrate)
                return plan.topology_from(self._last)
        self._last, listed = await _gather(self._session, self._types)
        # only what a refresh compares: /machine/unattached alone lists ~200 children
        # per VM (13 MiB at 1,000 VMs, measured with tracemalloc)
        self._listed = {c: listed[c] for c in MUTABLE_CONTAINERS}
        return plan.topology_from(self._last)


async def _gather(session: QmpSession, device_types: frozenset[str]
                  ) -> tuple[plan.Gathered, dict[str, tuple[tw.QomChild, ...]]]:
    """Everything, and each container's children as listed."""
    version_reply, listed, aux = await asyncio.gather(
        session.execute("query-version"), _listings(session, plan.CONTAINERS),
        _auxiliary(session)
    )
    version = translate.version_from(version_reply)
    children = [child for name in plan.CONTAINERS for child in listed[name]]
    targets = plan.targets_from(children, device_types)
    # The flat view, BARs and memory devices decide only DMA-logging ranges: a VM
    # without VFIO devices (most of them) does not pay for them on every refresh.
    aux.update(await _memory_map(session) if targets.devices else NO_MEMORY_MAP)
    properties = await _read(session, version, plan.wanted_properties(targets, version))
    buses = [tw.parent_bus_of(c.path, properties.get(c.path, {}))
             for c in targets.devices if "addr" in properties.get(c.path, {})]
    owners = await _walk_buses(session, version, buses, targets.expander_ids())
    mtree, mtree_error = aux["mtree"]
    return plan.Gathered(
        version=version, targets=targets, properties=properties, owners=owners,
        machine_type=aux["machine_type"][0], machine_iommu=aux["machine_iommu"][0],
        memory_size=aux["memory_size"][0], migrate=aux["migrate"][0], pci=aux["pci"][0],
        memory_devices=aux["memory_devices"][0], mtree=mtree, mtree_error=mtree_error,
    ), listed


async def _listings(session: QmpSession, containers: Sequence[str]
                    ) -> dict[str, tuple[tw.QomChild, ...]]:
    """Each container's children; a container QEMU never created is empty."""
    async def listing(container: str) -> tuple[tw.QomChild, ...]:
        try:
            reply = await session.execute("qom-list", {"path": container})
        except QmpCommandError as exc:
            if exc.error_class == "DeviceNotFound":
                return ()
            raise
        return tw.children_from(container, reply)

    lists = await asyncio.gather(*(listing(c) for c in containers))
    return dict(zip(containers, lists, strict=True))


async def peripherals(session: QmpSession) -> frozenset[tw.QomChild]:
    """The children of peripheral and peripheral-anon now (the hot-plug poll)."""
    listed = await _listings(session, (plan.PERIPHERAL, plan.PERIPHERAL_ANON))
    return frozenset(c for children in listed.values() for c in children)


async def _auxiliary(session: QmpSession) -> dict[str, tuple[object | None, str | None]]:
    """The queries that do not depend on QOM; optional ones carry their error text."""
    async def required(command: str) -> tuple[object | None, str | None]:
        return await session.execute(command), None

    async def optional(command: str, arguments: Mapping[str, object]
                       ) -> tuple[object | None, str | None]:
        try:
            return await session.execute(command, arguments), None
        except (QmpCommandError, QmpTimeoutError, CommandNotAllowed) as exc:
            return None, str(exc)

    names = ("migrate", "memory_size", "machine_type", "machine_iommu")
    replies = await asyncio.gather(
        required("query-migrate"), required("query-memory-size-summary"),
        optional("qom-get", {"path": "/machine", "property": "type"}),
        optional("qom-get", {"path": "/machine", "property": "iommu"}),
    )
    return dict(zip(names, replies, strict=True))


#: What a VM without VFIO devices reports instead of its memory map.
NO_MEMORY_MAP: dict[str, tuple[object | None, str | None]] = {
    "pci": ([], None), "memory_devices": ([], None),
    "mtree": (None, "not gathered: the VM has no VFIO device (the flat view only decides "
                    "DMA-logging ranges)"),
}


async def _memory_map(session: QmpSession) -> dict[str, tuple[object | None, str | None]]:
    """query-pci, query-memory-devices and the flat view (``info mtree -f -o``)."""
    async def mtree() -> tuple[object | None, str | None]:
        try:
            return await session.execute("human-monitor-command", MTREE), None
        except (QmpCommandError, QmpTimeoutError, CommandNotAllowed) as exc:
            return None, str(exc)

    pci, memory_devices, flat = await asyncio.gather(
        session.execute("query-pci"), session.execute("query-memory-devices"), mtree())
    return {"pci": (pci, None), "memory_devices": (memory_devices, None), "mtree": flat}


async def _read(session: QmpSession, version: QemuVersion,
                wanted: Mapping[str, Sequence[str]]) -> Properties:
    """path -> the wanted properties it has (one qom-list-get, or concurrent qom-gets)."""
    paths = sorted(wanted)
    if not paths:
        return {}
    if plan.uses_qom_list_get(version):
        every = tw.properties_from_list_get(
            paths, await session.execute("qom-list-get", {"paths": paths}))
        return {p: {n: v for n, v in every[p].items() if n in wanted[p]} for p in paths}
    pairs = [(p, n) for p in paths for n in wanted[p]]
    values = await asyncio.gather(*(_get(session, p, n) for p, n in pairs))
    read: Properties = {p: {} for p in paths}
    for (path, name), (present, value) in zip(pairs, values, strict=True):
        if present:
            read[path][name] = value
    return read


async def _get(session: QmpSession, path: str, name: str) -> tuple[bool, object]:
    """``qom-get``; (False, None) when this QEMU does not have the property."""
    try:
        return True, await session.execute("qom-get", {"path": path, "property": name})
    except QmpCommandError as exc:
        if tw.is_absent_property(exc.error_class, exc.desc):
            return False, None
        raise


async def _walk_buses(session: QmpSession, version: QemuVersion,
                      buses: Sequence[str | None], expanders: Mapping[str, str]
                      ) -> dict[str, tw.BusOwner]:
    """Read the devices providing ``buses``, then theirs, up to the host bridges."""
    owners: dict[str, tw.BusOwner] = {}
    frontier = plan.next_owners(buses, owners, expanders)
    for _ in range(plan.MAX_BUS_DEPTH):
        if not frontier:
            break
        props = await _read(session, version,
                            dict.fromkeys(frontier, plan.BUS_OWNER_PROPERTIES))
        read = [tw.bus_owner_from(path, props[path]) for path in frontier]
        owners.update((owner.path, owner) for owner in read)
        frontier = plan.next_owners(plan.buses_above(read), owners, expanders)
    return owners
