"""The VFIO stand-in itself, over real sockets, in front of a real QEMU 10.0.2 (-S).

What it forwards must be QEMU's reply unchanged; what it fabricates must match the
QEMU version it presents and QEMU's own introspected schema, and a fabrication that
does not is refused loudly.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError, QMPClient

from qmpdirty.demo.lab import end_child
from qmpdirty.demo.lab.qapi_schema import SchemaMismatch
from qmpdirty.demo.lab.vfio_hotplug import Plug, bridge_bus, with_fabricated
from qmpdirty.demo.lab.vfio_lab import start_qemu
from qmpdirty.demo.lab.vfio_scenario import (
    NVME,
    PCIE0,
    Bar,
    FabDevice,
    FabViommu,
    Scenario,
    ScenarioError,
    inject_flat_view,
)
from qmpdirty.demo.lab.vfio_standin import VfioStandIn
from qmpdirty.qmp.topology.mtree import flat_view_for
from tests.support.golden import BYPASS_BUS, QEMU_ARGS

BDF = "0000:3b:00.0"
DEVICE = FabDevice("hostdev0", BDF, 0x20, bars=(Bar(0, 0x3800_0000_0000, 0x200_0000),))
H0 = "/machine/peripheral/hostdev0"
H1 = "/machine/peripheral/hostdev1"
NVME_BDF = "0000:3c:00.0"
#: an NVMe controller on plain vfio-pci, plugged into the root port behind the pxb
PLUG = Plug(FabDevice("hostdev1", NVME_BDF, 0, bus=BYPASS_BUS, pci_id=NVME, hotplugged=True),
            "rpx", blocked_reasons=(f"{NVME_BDF}: VFIO migration is not supported in kernel",))
PLUG_ARGS = {"driver": "vfio-pci", "host": NVME_BDF, "id": "hostdev1", "bus": "rpx"}


@pytest.fixture(scope="module")
def qemu_socket() -> Iterator[Path]:
    run = Path(tempfile.mkdtemp(prefix="qd-standin-", dir="/tmp"))
    proc = start_qemu(run / "qemu.sock", QEMU_ARGS, run / "qemu.log")
    yield run / "qemu.sock"
    end_child(proc)


@pytest.fixture
async def standin(qemu_socket: Path) -> AsyncIterator[VfioStandIn]:
    s = await VfioStandIn(qemu_socket).start()
    yield s
    await s.close()


async def client(standin: VfioStandIn, scenario: Scenario) -> QMPClient:
    path = Path(tempfile.mkdtemp(prefix="qd-vm-", dir="/tmp")) / "vm.sock"
    await standin.serve(path, scenario)
    qmp = QMPClient("test")
    await qmp.connect(str(path))
    return qmp


async def error_of(qmp: QMPClient, command: str, args: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ExecuteError) as caught:
        await qmp.execute(command, args)
    return caught.value.error_class, str(caught.value)


async def test_unaugmented_commands_and_errors_are_qemu_s(standin: VfioStandIn) -> None:
    qmp = await client(standin, Scenario((10, 0, 2), (DEVICE,)))
    for command in ("query-status", "query-kvm", "query-memory-size-summary"):
        assert await qmp.execute(command) == await standin.upstream(command)
    assert await error_of(qmp, "qom-get", {"path": "/nowhere", "property": "type"}) == (
        "DeviceNotFound", "Device '/nowhere' not found")
    # a real object's property, read through the stand-in (the bus walk relies on it)
    assert await qmp.execute("qom-get", {"path": "/machine/q35",
                                         "property": "bypass-iommu"}) is False
    await qmp.disconnect()
    assert standin.failures == []


async def test_qemu_8_0_has_x_enable_migration_and_no_qom_list_get(
        standin: VfioStandIn) -> None:
    qmp = await client(standin, Scenario((8, 0, 5), (DEVICE,)))
    assert qmp.greeting is not None
    assert qmp.greeting.QMP.version["qemu"] == {"major": 8, "minor": 0, "micro": 5}
    version = await qmp.execute("query-version")
    assert isinstance(version, dict) and version["qemu"] == {"major": 8, "minor": 0, "micro": 5}
    get = {"path": H0}
    assert await qmp.execute("qom-get", {**get, "property": "x-enable-migration"}) is False
    assert await error_of(qmp, "qom-get", {**get, "property": "enable-migration"}) == (
        "GenericError", "Property 'vfio-pci.enable-migration' not found")
    assert await error_of(qmp, "qom-get", {**get, "property": "iommufd"}) == (
        "GenericError", "Property 'vfio-pci.iommufd' not found")
    assert (await error_of(qmp, "qom-list-get", {"paths": [H0]}))[0] == "CommandNotFound"
    assert await qmp.execute("qom-get", {**get, "property": "addr"}) == 0x20  # devfn
    assert await qmp.execute("qom-get", {"path": "/machine", "property": "type"}) == \
        "pc-q35-8.0-machine"
    await qmp.disconnect()


async def test_qemu_10_2_lists_every_property_with_qom_list_get(standin: VfioStandIn) -> None:
    scenario = Scenario((10, 2, 2), (FabDevice("hostdev0", BDF, 0x20, iommufd="fd0"),),
                        iommufds=("fd0",), viommu=FabViommu())
    qmp = await client(standin, scenario)
    reply = await qmp.execute("qom-list-get", {"paths": [H0, "/machine/q35"]})
    assert isinstance(reply, list) and len(reply) == 2
    device = {p["name"]: p for p in reply[0]["properties"]}
    assert device["enable-migration"] == {"name": "enable-migration", "type": "OnOffAuto",
                                          "value": "auto"}
    assert device["iommufd"]["value"] == "/objects/fd0" and "x-enable-migration" not in device
    assert device["addr"] == {"name": "addr", "type": "str", "value": 0x20}
    assert device["fd"] == {"name": "fd", "type": "string"}  # write-only: no value
    host_bridge = {p["name"]: p.get("value") for p in reply[1]["properties"]}
    assert host_bridge["bypass-iommu"] is False  # the real QEMU's
    children = await qmp.execute("qom-list", {"path": "/machine/peripheral"})
    assert isinstance(children, list)
    assert {"name": "hostdev0", "type": "child<vfio-pci>"} in children
    assert {"name": "viommu0", "type": "child<intel-iommu>"} in children
    assert {"name": "dimm0", "type": "child<pc-dimm>"} in children  # QEMU's own
    objects = await qmp.execute("qom-list", {"path": "/objects"})
    assert isinstance(objects, list) and {"name": "fd0", "type": "child<iommufd>"} in objects
    await qmp.disconnect()
    assert standin.failures == []


async def test_bars_blockers_and_pci(standin: VfioStandIn) -> None:
    blocked = (f"{BDF}: VFIO migration is not supported in kernel",)
    qmp = await client(standin, Scenario((10, 0, 2), (DEVICE,), blocked_reasons=blocked))
    info = await qmp.execute("query-migrate")
    assert isinstance(info, dict) and info["blocked-reasons"] == list(blocked)
    text = await qmp.execute("human-monitor-command", {"command-line": "info mtree -f -o"})
    assert isinstance(text, str)
    sections = flat_view_for(text, "memory")
    assert sections is not None
    bar = next(s for s in sections if s.kind == "ramd")
    assert (bar.start, bar.end, bar.name, bar.owner) == (
        0x3800_0000_0000, 0x3800_01FF_FFFF, f"{BDF} BAR 0 mmaps[0]", "hostdev0")
    assert [s.name for s in sections][-2:] == ["dimm0mem", f"{BDF} BAR 0 mmaps[0]"]
    buses = await qmp.execute("query-pci")
    assert isinstance(buses, list)
    bus0 = next(b for b in buses if b["bus"] == 0)
    ours = [d for d in bus0["devices"] if d["qdev_id"] == "hostdev0"]
    assert ours[0]["slot"] == 4 and ours[0]["regions"][0]["address"] == 0x3800_0000_0000
    await qmp.disconnect()


async def test_a_wrongly_typed_fabrication_fails_loudly(standin: VfioStandIn) -> None:
    bad = FabDevice("hostdev0", BDF, 0x20, enable_migration="maybe")
    qmp = await client(standin, Scenario((10, 0, 2), (bad,)))
    with pytest.raises(Exception):  # noqa: B017 - the stand-in hangs up, as it must
        await asyncio.wait_for(qmp.execute(
            "qom-get", {"path": H0, "property": "enable-migration"}), 5)
    assert len(standin.failures) == 1 and "'maybe' not in enum" in standin.failures[0]
    standin.failures.clear()


async def test_the_schema_checker_catches_wrong_shapes(standin: VfioStandIn) -> None:
    schema = standin.schema
    with pytest.raises(SchemaMismatch, match="expected int"):
        schema.check_return("query-version", {"qemu": {"major": "10", "minor": 0, "micro": 2},
                                              "package": ""})
    with pytest.raises(SchemaMismatch, match="unexpected member 'blocked-reason'"):
        schema.check_return("query-migrate", {"blocked-reason": ["x"]})
    with pytest.raises(SchemaMismatch, match="required member 'path' missing"):
        schema.check_event("DEVICE_DELETED", {"device": "hostdev0"})
    with pytest.raises(SchemaMismatch, match="out of range for uint8"):
        schema.check_qom_value("uint8", 300, "aw-bits")
    with pytest.raises(SchemaMismatch, match="not a QOM path"):
        schema.check_qom_value("link<iommufd>", "iommufd0", "iommufd")
    with pytest.raises(SchemaMismatch, match="expected bool"):
        schema.check_qom_value("bool", 1, "hotplugged")
    schema.check_return("query-migrate", {"blocked-reasons": ["x"]})  # and the right ones pass


async def test_events_only_those_qemu_has(standin: VfioStandIn) -> None:
    path = Path(tempfile.mkdtemp(prefix="qd-vm-", dir="/tmp")) / "vm.sock"
    endpoint = await standin.serve(path, Scenario((10, 2, 2), (DEVICE,)))
    qmp = QMPClient("test")
    await qmp.connect(str(path))
    with pytest.raises(SchemaMismatch, match="event 'DEVICE_ADDED' is not in"):
        await standin.emit(endpoint, "DEVICE_ADDED", {"device": "hostdev0", "path": H0})
    await standin.set_scenario(endpoint, Scenario((10, 2, 2)),
                               ("DEVICE_DELETED", {"device": "hostdev0", "path": H0}))
    event = dict(await asyncio.wait_for(qmp.events.get(), 5))
    assert event["event"] == "DEVICE_DELETED" and event["data"] == {"device": "hostdev0",
                                                                    "path": H0}
    children = await qmp.execute("qom-list", {"path": "/machine/peripheral"})
    assert isinstance(children, list) and all(c["name"] != "hostdev0" for c in children)
    await qmp.disconnect()


async def test_capabilities_negotiation_comes_first(standin: VfioStandIn) -> None:
    path = Path(tempfile.mkdtemp(prefix="qd-vm-", dir="/tmp")) / "vm.sock"
    await standin.serve(path, Scenario((9, 1, 3)))
    reader, writer = await asyncio.open_unix_connection(str(path))
    greeting = json.loads(await reader.readline())
    assert greeting["QMP"]["version"]["qemu"] == {"major": 9, "minor": 1, "micro": 3}
    writer.write(b'{"execute": "query-status", "id": 1}')
    reply = json.loads(await reader.readline())
    assert reply == {"error": {"class": "CommandNotFound", "desc": "Expecting capabilities "
                               "negotiation with 'qmp_capabilities'"}, "id": 1}
    writer.close()


def test_a_bar_over_ram_cannot_be_presented() -> None:
    text = (" AS \"memory\", root: system\n Root memory region: system\n"
            "  0000000000000000-000000001fffffff (prio 0, ram): pc.ram\n")
    with pytest.raises(ScenarioError, match="overlaps"):
        inject_flat_view(text, [(0x1000_0000, 0x1000_0FFF, "  bar")])


async def test_device_add_and_del_of_a_plug(standin: VfioStandIn) -> None:
    """``device_add`` of the plug realizes it with its blocker; ``device_del`` ejects it:
    DEVICE_DELETED, and the device and its blocker are gone (migration.c:1133-1140)."""
    path = Path(tempfile.mkdtemp(prefix="qd-vm-", dir="/tmp")) / "vm.sock"
    before = Scenario((10, 0, 2), (DEVICE,))
    endpoint = await standin.serve(path, before, (PLUG,))
    qmp = QMPClient("test")
    await qmp.connect(str(path))
    assert await qmp.execute("device_add", PLUG_ARGS) == {}
    children = await qmp.execute("qom-list", {"path": "/machine/peripheral"})
    assert isinstance(children, list)
    assert {"name": "hostdev1", "type": "child<vfio-pci>"} in children
    assert await qmp.execute("qom-get", {"path": H1, "property": "hotplugged"}) is True
    assert await qmp.execute("qom-get", {"path": H1, "property": "parent_bus"}) == BYPASS_BUS
    info = await qmp.execute("query-migrate")
    assert isinstance(info, dict) and info["blocked-reasons"] == list(PLUG.blocked_reasons)
    assert await error_of(qmp, "device_add", PLUG_ARGS) == (
        "GenericError", "Duplicate device ID 'hostdev1'")
    # a device no plug offers is the real QEMU's to refuse, in its own words
    refused = await error_of(qmp, "device_add", {**PLUG_ARGS, "host": "0000:99:00.0",
                                                 "id": "other"})
    assert refused[0] == "GenericError" and "0000:99:00.0" in refused[1], refused
    assert await qmp.execute("device_del", {"id": "hostdev1"}) == {}
    event = dict(await asyncio.wait_for(qmp.events.get(), 5))
    assert (event["event"], event["data"]) == ("DEVICE_DELETED",
                                               {"device": "hostdev1", "path": H1})
    assert endpoint.scenario == before
    info = await qmp.execute("query-migrate")
    assert isinstance(info, dict) and "blocked-reasons" not in info
    assert (await error_of(qmp, "device_del", {"id": "hostdev1"}))[0] == "DeviceNotFound"
    await qmp.disconnect()
    assert standin.failures == []


def test_query_pci_lists_a_plug_behind_a_numbered_bridge_only() -> None:
    """QEMU lists a bridge's ``devices`` once firmware numbered its secondary bus."""
    plugged = Plug(FabDevice("hostdev1", NVME_BDF, 0, bus=bridge_bus("rp1"), pci_id=NVME,
                             hotplugged=True), "rp1")
    scenario = Scenario((10, 0, 2), (DEVICE, plugged.device))

    def port(numbered: bool) -> dict[str, Any]:
        bridge: dict[str, Any] = {"bus": {"number": 0, "secondary": 1 if numbered else 0,
                                          "subordinate": 1 if numbered else 0}}
        if numbered:
            bridge["devices"] = []
        return {"bus": 0, "slot": 5, "function": 0, "qdev_id": "rp1", "pci_bridge": bridge}

    devices = with_fabricated([port(numbered=True)], scenario, PCIE0)
    assert [d.get("qdev_id") for d in devices] == ["hostdev0", "rp1"]  # slot 4, then 5
    behind = devices[1]["pci_bridge"]["devices"]
    assert [(d["qdev_id"], d["bus"], d["slot"]) for d in behind] == [("hostdev1", 1, 0)]
    unnumbered = with_fabricated([port(numbered=False)], scenario, PCIE0)
    assert "devices" not in unnumbered[1]["pci_bridge"]
