"""A QMP server that puts VFIO devices into a real QEMU's replies (lab: tests, demo).

This machine has no VFIO hardware. ``VfioStandIn`` sits between a QMP client (the
daemon, ``qmpdirty probe``) and a real ``qemu-system-x86_64`` (10.0.2): every command
is forwarded to QEMU over the stand-in's own ``QMPClient`` connection, and the replies
that would differ on a VM with the scenario's VFIO devices are augmented the way that
QEMU version would show them (``vfio_scenario``): ``query-version`` and the greeting
present the scenario's version; ``qom-list`` of /machine/peripheral(-anon) and
/objects gains the devices, vIOMMU and iommufd objects; ``qom-get`` / ``qom-list-get``
(10.1+ only, else ``CommandNotFound``) answer their properties (``GenericError
"Property 'T.N' not found"`` for ones that version lacks); ``query-pci`` and
``info mtree -f -o`` gain the BARs; ``query-migrate`` ``blocked-reasons`` gains the
scenario's hand-written blockers; ``device_add`` / ``device_del`` of a device the
endpoint offers as a ``Plug`` hot-plug and unplug it (``vfio_hotplug``). Bus walks, host
bridges, RAM, the memory map and everything else are the real QEMU's.

Every fabricated or augmented reply, error and event is checked against the real
QEMU's ``query-qmp-schema`` (``qapi_schema``; fetched once at start). A mismatch is
recorded in ``failures``, logged, and the client's connection is closed: tests
assert ``failures`` is empty, so a wrong fabrication fails loudly.

One stand-in serves several sockets (``serve``), one scenario each, all over the same
QEMU (replies are built per request, so the scenarios do not interfere). Each socket is
a ``QmpServer`` of the lab's one fake QMP core (``qmpdirty.demo.lab.fakeqmp``: greeting,
negotiation, framing, ``id``, in QEMU's shapes), whose responder is this stand-in bound
to the endpoint; like QEMU, each connection answers its commands in order. ``topology``
answers the sans-I/O ``TopologyQuery`` in-process, with no socket at all.
``StandInThread`` runs one on its own event loop for synchronous callers, the demo and
the system tests (``vfio_lab``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient

from qmpdirty.demo.lab import qmpwire
from qmpdirty.demo.lab import vfio_scenario as fab
from qmpdirty.demo.lab.fakeqmp import Command, QmpServer
from qmpdirty.demo.lab.qapi_schema import QOM_LIST_GET_10_1, QapiSchema
from qmpdirty.demo.lab.qmpwire import ErrorReply
from qmpdirty.demo.lab.vfio_hotplug import (
    EJECT_DELAY_S,
    Plug,
    deleted_event,
    plugged_in,
    with_fabricated,
    with_plug,
    without_plug,
)
from qmpdirty.demo.lab.vfio_scenario import Scenario
from qmpdirty.facts.qemu import QOM_LIST_GET
from qmpdirty.facts.topology import VmTopology
from qmpdirty.qmp.topology.exchange import Failed, Reply, Returned
from qmpdirty.qmp.topology.query import TopologyQuery

MTREE = "info mtree -f -o"


@dataclass
class Endpoint:
    """One socket presenting one scenario (``scenario`` may be swapped at run time, and
    changes when a client plugs or unplugs one of ``plugs``)."""

    path: Path
    scenario: Scenario
    plugs: tuple[Plug, ...] = ()
    server: QmpServer | None = None
    commands: list[str] = field(default_factory=list)  # names received, for tests


Handler = Callable[[Endpoint, dict[str, Any]], Awaitable[object]]


class VfioStandIn:
    """``await start()``, then ``serve(path, scenario)`` for each VM to present."""

    def __init__(self, qemu_socket: Path) -> None:
        self.qemu_socket = qemu_socket
        self.failures: list[str] = []
        self.endpoints: list[Endpoint] = []
        self.schema = QapiSchema()
        self.package = ""
        self._qmp = QMPClient("vfio-standin")
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: dict[str, Handler] = {
            "query-version": self._query_version, "qom-list": self._qom_list,
            "qom-get": self._qom_get, "qom-list-get": self._qom_list_get,
            "query-pci": self._query_pci, "human-monitor-command": self._hmp,
            "query-migrate": self._query_migrate, "query-commands": self._query_commands,
            "device_add": self._device_add, "device_del": self._device_del,
        }

    async def start(self) -> VfioStandIn:
        """Connect to QEMU and read its schema and package string."""
        await self._qmp.connect(str(self.qemu_socket))
        self.schema = QapiSchema.from_introspection(
            await self.upstream("query-qmp-schema"), QOM_LIST_GET_10_1)
        version = await self.upstream("query-version")
        assert isinstance(version, dict)
        self.package = str(version["package"])
        self._tasks.append(asyncio.create_task(self._forward_events(), name="standin-events"))
        return self

    async def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.server is not None:
                await endpoint.server.close()
        for task in self._tasks:
            task.cancel()
        await self._qmp.disconnect()

    async def serve(self, path: Path, scenario: Scenario, plugs: tuple[Plug, ...] = ()
                    ) -> Endpoint:
        """Listen on ``path`` presenting ``scenario``; clients may ``device_add`` ``plugs``."""
        scenario.validate()
        endpoint = Endpoint(path, scenario, plugs)
        endpoint.server = QmpServer(
            _Presenter(self, endpoint), name="VFIO stand-in", failures=self.failures,
            on_message=lambda m: endpoint.commands.append(_name_of(m)))
        await endpoint.server.listen(path)
        self.endpoints.append(endpoint)
        return endpoint

    async def set_scenario(self, endpoint: Endpoint, scenario: Scenario,
                           event: tuple[str, dict[str, Any]] | None = None) -> None:
        """Change what ``endpoint`` presents (hot-plug, unplug), then send ``event``
        (QEMU's DEVICE_DELETED, say) to its clients."""
        scenario.validate()
        endpoint.scenario = scenario
        if event is not None:
            await self.emit(endpoint, *event)

    async def emit(self, endpoint: Endpoint, event: str, data: dict[str, Any]) -> None:
        """Send a QMP event to the endpoint's clients; it must be one this QEMU has."""
        self.schema.check_event(event, data)
        assert endpoint.server is not None
        endpoint.server.emit(event, data)

    async def upstream(self, command: str, arguments: dict[str, Any] | None = None) -> object:
        """One command to the real QEMU; its error becomes ``ErrorReply``."""
        try:
            result: object = await self._qmp.execute(command, arguments)
        except ExecuteError as exc:
            raise ErrorReply(exc.error_class, str(exc)) from exc
        return result

    # --- one client ---------------------------------------------------------------------

    def greeting(self, endpoint: Endpoint) -> dict[str, Any]:
        version = self._version(endpoint)
        self.schema.check_return("query-version", version)
        return qmpwire.greeting(version)

    async def answer(self, endpoint: Endpoint, command: Command) -> object:
        """The scenario's reply where it differs from QEMU's, else QEMU's own."""
        try:
            handler = self._handlers.get(command.name)
            if handler is not None:
                return await handler(endpoint, command.arguments)
            return await self.upstream(command.name, command.arguments)
        except ErrorReply as exc:
            self.schema.check_error(exc.cls, exc.desc)
            raise

    async def topology(self, endpoint: Endpoint, query: TopologyQuery | None = None
                       ) -> VmTopology:
        """The daemon's topology query answered by the stand-in itself: no socket between
        them (only its own link to QEMU), the replies as the stand-in makes them."""
        async def reply(command: str, arguments: Mapping[str, object] | None) -> Reply:
            try:
                return Returned(await self.answer(
                    endpoint, Command(command, dict(arguments or {}), {})))
            except ErrorReply as exc:
                return Failed(exc.cls, exc.desc)
        query = query or TopologyQuery()
        while batch := query.next_requests():  # exchange.drive's loop, awaiting each answer
            query.receive([await reply(r.command, r.arguments) for r in batch])
        return query.result()

    # --- augmented commands --------------------------------------------------------------

    def _version(self, endpoint: Endpoint) -> dict[str, Any]:
        major, minor, micro = endpoint.scenario.version
        return {"qemu": {"major": major, "minor": minor, "micro": micro},
                "package": f"{self.package} (qmpdirty VFIO stand-in)"}

    async def _query_version(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        version = self._version(endpoint)
        self.schema.check_return("query-version", version)
        return version

    async def _qom_list(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        path = str(args.get("path", ""))
        obj = endpoint.scenario.find(path)
        if obj is not None:
            listed = [{"name": p.name, "type": p.qom_type}
                      for p, _ in fab.properties(obj, endpoint.scenario.version)]
        elif path in fab.CONTAINERS and (extra := fab.children(endpoint.scenario, path)):
            try:
                real = await self.upstream("qom-list", args)
            except ErrorReply as exc:
                if exc.cls != "DeviceNotFound":
                    raise
                real = [{"name": "type", "type": "string"}]
            listed = [*_as_list(real), *extra]
        else:
            return await self.upstream("qom-list", args)
        self.schema.check_return("qom-list", listed)
        return listed

    async def _qom_get(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        path, name = str(args.get("path", "")), str(args.get("property", ""))
        scenario = endpoint.scenario
        obj = scenario.find(path)
        if obj is None:
            if path == "/machine" and name == "type":
                value: object = fab.machine_type(scenario.version)
                self.schema.check_qom_value("str", value, "qom-get /machine type")
                return value
            return await self.upstream("qom-get", args)
        for prop, value in fab.properties(obj, scenario.version):
            if prop.name == name:
                if prop.value_type is None:
                    raise ErrorReply("GenericError", f"Property '{fab.type_of(obj)}.{name}' "
                                     "is not readable")
                self.schema.check_qom_value(prop.value_type, value, f"qom-get {path} {name}")
                self.schema.check_return("qom-get", value)
                return value
        raise ErrorReply("GenericError", f"Property '{fab.type_of(obj)}.{name}' not found")

    async def _qom_list_get(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        """QEMU 10.1 ``qmp_qom_list_get`` (qom/qom-qmp-cmds.c): every property of each
        path with its value, ``value`` absent when the getter fails."""
        if not endpoint.scenario.has(QOM_LIST_GET):
            raise ErrorReply("CommandNotFound", "The command qom-list-get has not been found")
        self.schema.check_arguments("qom-list-get", args)
        results = [{"properties": await self._values_of(endpoint, str(p))}
                   for p in args["paths"]]
        self.schema.check_return("qom-list-get", results)
        return results

    async def _values_of(self, endpoint: Endpoint, path: str) -> list[dict[str, object]]:
        scenario = endpoint.scenario
        obj = scenario.find(path)
        out: list[dict[str, object]] = []
        if obj is not None:
            for prop, value in fab.properties(obj, scenario.version):
                entry: dict[str, object] = {"name": prop.name, "type": prop.qom_type}
                if prop.value_type is not None:
                    self.schema.check_qom_value(prop.value_type, value, f"{path} {prop.name}")
                    entry["value"] = value
                out.append(entry)
            return out
        for info in _as_list(await self.upstream("qom-list", {"path": path})):
            entry = {"name": info["name"], "type": info["type"]}
            with contextlib.suppress(ErrorReply):
                entry["value"] = await self._qom_get(
                    endpoint, {"path": path, "property": info["name"]})
            out.append(entry)
        return out

    async def _query_pci(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        buses = _as_list(await self.upstream("query-pci", args))
        for bus in buses:
            if bus["bus"] == 0:
                bus["devices"] = with_fabricated(bus["devices"], endpoint.scenario)
        self.schema.check_return("query-pci", buses)
        return buses

    async def _hmp(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        text = await self.upstream("human-monitor-command", args)
        if args.get("command-line") != MTREE:
            return text
        assert isinstance(text, str)
        augmented = fab.inject_flat_view(text, list(fab.bar_sections(endpoint.scenario)))
        self.schema.check_return("human-monitor-command", augmented)
        return augmented

    async def _query_migrate(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        info = await self.upstream("query-migrate", args)
        assert isinstance(info, dict)
        reasons = [*endpoint.scenario.blocked_reasons, *info.get("blocked-reasons", [])]
        if reasons:
            info["blocked-reasons"] = reasons
        self.schema.check_return("query-migrate", info)
        return info

    async def _query_commands(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        """``qom-list-get`` is listed exactly when the presented version has it."""
        names = [c for c in _as_list(await self.upstream("query-commands", args))
                 if c["name"] != "qom-list-get"]
        if endpoint.scenario.has(QOM_LIST_GET):
            names.append({"name": "qom-list-get"})
        self.schema.check_return("query-commands", names)
        return names

    async def _device_add(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        """A plug's device is realized at once; any other request is QEMU's to refuse."""
        plug = next((p for p in endpoint.plugs if p.requested_by(args)), None)
        if plug is None:
            return await self.upstream("device_add", args)
        if endpoint.scenario.find(plug.device.path) is not None:
            raise ErrorReply("GenericError", f"Duplicate device ID '{plug.device.id}'")
        await self.set_scenario(endpoint, with_plug(endpoint.scenario, plug))
        self.schema.check_return("device_add", {})
        return {}

    async def _device_del(self, endpoint: Endpoint, args: dict[str, Any]) -> object:
        """A plugged device goes once the (simulated) guest has ejected it."""
        plug = next((p for p in plugged_in(endpoint.scenario, endpoint.plugs)
                     if p.device.id == args.get("id")), None)
        if plug is None:
            return await self.upstream("device_del", args)
        self._tasks.append(asyncio.create_task(self._eject(endpoint, plug),
                                               name=f"standin-eject {plug.device.id}"))
        self.schema.check_return("device_del", {})
        return {}

    async def _eject(self, endpoint: Endpoint, plug: Plug) -> None:
        await asyncio.sleep(EJECT_DELAY_S)
        await self.set_scenario(endpoint, without_plug(endpoint.scenario, plug),
                                deleted_event(plug))

    async def _forward_events(self) -> None:
        """The real QEMU's own events go to every client, as they would."""
        async for event in self._qmp.events:
            message = dict(event)
            for endpoint in self.endpoints:
                if endpoint.server is not None:
                    endpoint.server.broadcast(message)


class _Presenter:
    """The fake QMP core's responder for one endpoint: the stand-in, bound to it."""

    def __init__(self, standin: VfioStandIn, endpoint: Endpoint) -> None:
        self.standin = standin
        self.endpoint = endpoint

    def greeting(self) -> object:
        return self.standin.greeting(self.endpoint)

    def answer(self, command: Command) -> Awaitable[object]:
        return self.standin.answer(self.endpoint, command)


def _name_of(message: object) -> str:
    if not isinstance(message, dict):
        return ""
    return str(message.get("execute", message.get("exec-oob", "")))


def _as_list(value: object) -> list[dict[str, Any]]:
    assert isinstance(value, list), f"expected a list, got {value!r}"
    return value
