"""``gather_topology`` against a scripted QMP server replaying QEMU 10.0.2's own replies.

``tests/data/topology/<scenario>.json`` (written by ``record_topology.py``) holds every
command ``gather_topology`` sent to a real q35 and QEMU's reply. This machine has no
VFIO devices, so the VFIO devices here are synthetic, put in place of the recorded
``virtio-net-pci`` stand-ins (same path on the same recorded bus): their ``qom-get``
values have the types ``device-list-properties vfio-pci`` reported (recorded too), and
a property a version lacks answers QEMU's recorded "Property 'TYPE.NAME' not found".
Everything else (containers, buses, host bridges, vIOMMUs, query-*, the flat view)
is QEMU's reply verbatim. ``qom-list-get`` (QEMU 10.1, absent from 10.0.2) answers in
the shape of reference §4.1 = qapi/qom.json of the 10.1 patch (``ObjectPropertiesValues``
``{"properties": [{"name", "type", "value"?}]}``), built from the recorded properties.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.config.address import QmpAddress
from qmpdirty.demo.lab.recorded_topology import RecordedTopology
from qmpdirty.errors import QmpCommandError, QmpReplyError
from qmpdirty.facts.topology import VFIO_TYPES, VfioDevice, Viommu, VmTopology
from qmpdirty.facts.vm import VmBasics
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.gather import gather_topology
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology.exchange import Failed, Returned
from tests.adapters.scripted_qmp import QmpError, ScriptedQmp

DATA = Path(__file__).resolve().parent.parent / "data" / "topology"
STAND_IN = frozenset({"virtio-net-pci"})
ANSWERED = ("query-version", "qom-list", "qom-get", "qom-list-get", "query-pci",
            "query-memory-devices", "query-migrate", "query-memory-size-summary",
            "human-monitor-command")
Override = Callable[[dict[str, Any]], object]


key = RecordedTopology.key


@dataclass
class FakeDevice:
    """A synthetic QOM device: ``props`` are what qom-get answers; others are absent."""

    path: str
    qom_type: str
    props: dict[str, object]
    replaces: str | None = None  # recorded child it stands in for


@dataclass
class Replay:
    """Handlers for ScriptedQmp answering from a recording plus synthetic devices."""

    scenario: str
    version: tuple[int, int, int] = (10, 0, 2)
    devices: list[FakeDevice] = field(default_factory=list)
    overrides: dict[str, Override] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recording = RecordedTopology(DATA / f"{self.scenario}.json")
        self.doc = self.recording.doc
        self.types = {p["name"]: p["type"] for p in self.doc["vfio_pci_properties"]}
        self.types.update({"parent_bus": "link<bus>", "hotplugged": "bool",
                           "x-enable-migration": "bool"})
        self.fake = {d.path: d for d in self.devices}

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], object]]:
        def handler(command: str) -> Callable[[dict[str, Any]], object]:
            return lambda arguments: self.answer(command, arguments)
        return {command: handler(command) for command in ANSWERED}

    def answer(self, command: str, arguments: dict[str, Any]) -> object:
        if command in self.overrides:
            return self.overrides[command](arguments)
        return self.replayed(command, arguments)

    def replayed(self, command: str, arguments: dict[str, Any]) -> object:
        """The answer without overrides (overrides fall back to it)."""
        if command == "query-version":
            major, minor, micro = self.version
            return {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": ""}
        if command == "qom-list-get":
            return self.list_get(arguments["paths"])
        if command == "qom-get" and arguments["path"] in self.fake:
            device = self.fake[arguments["path"]]
            name = arguments["property"]
            if name in device.props:
                return device.props[name]
            return QmpError("GenericError", f"Property '{device.qom_type}.{name}' not found")
        reply = self.recorded_reply(command, arguments)
        return self.with_fakes(arguments["path"], reply) if command == "qom-list" else reply

    @property
    def misses(self) -> list[str]:
        """The requests the recording does not hold."""
        return self.recording.misses

    def recorded_reply(self, command: str, arguments: dict[str, Any]) -> object:
        reply = self.recording(command, arguments)
        if isinstance(reply, Failed):
            return QmpError(reply.error_class or "GenericError", reply.desc)
        return reply.value if isinstance(reply, Returned) else reply

    def with_fakes(self, container: str, reply: object) -> object:
        if not isinstance(reply, list):
            return reply
        gone = {d.replaces for d in self.devices}
        kept = [e for e in reply if f"{container}/{e['name']}" not in gone]
        added = [{"name": d.path.rsplit("/", 1)[-1], "type": f"child<{d.qom_type}>"}
                 for d in self.devices if d.path.rsplit("/", 1)[0] == container]
        return kept + added

    def list_get(self, paths: list[str]) -> object:
        if self.version < (10, 1, 0):
            return QmpError("CommandNotFound", "The command qom-list-get has not been found")
        results = []
        for path in paths:
            if path in self.fake:
                props = self.fake[path].props
                listed = [{"name": n, "type": self.types.get(n, "str"), "value": v}
                          for n, v in props.items()]
                listed += [{"name": "fd", "type": "string"},  # write-only: no value
                           {"name": "x-no-mmap", "type": "bool", "value": False}]
            elif path in self.doc["objects"]:
                listed = self.doc["objects"][path]
            else:
                return QmpError("DeviceNotFound", f"Device '{path}' not found")
            results.append({"properties": listed})
        return results


@asynccontextmanager
async def serving(replay: Replay) -> AsyncIterator[tuple[ScriptedQmp, QmpSession]]:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "qmp.sock"
    server = await ScriptedQmp(path, replies=replay.handlers()).start()
    session = await QmpSession.open(
        QmpAddress("unix", path), policy=CommandPolicy(enable_migration_events=False,
                                                       measure_dirty_rate=False),
        command_timeout_s=2.0, connect_timeout_s=2.0, event_queue_size=10, label="t")
    try:
        yield server, session
    finally:
        await session.close()
        await server.close()


async def gather(replay: Replay, device_types: frozenset[str] = VFIO_TYPES
                 ) -> tuple[VmTopology, list[dict[str, Any]]]:
    async with serving(replay) as (server, session):
        topology = await gather_topology(session, device_types=device_types)
    assert replay.misses == [], "gather asked something the recording does not hold"
    return topology, [c for c in server.commands if c["execute"] != "qmp_capabilities"]


def sent(commands: list[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    return [c.get("arguments", {}) for c in commands if c["execute"] == command]


# --- synthetic VFIO devices in place of the recorded stand-ins ---------------------------

ON_PXB = {"parent_bus": "/machine/peripheral/rp1/rp1", "addr": 0}  # behind bypass_iommu=true
ON_RP0 = {"parent_bus": "/machine/peripheral/rp0/rp0", "addr": 0}  # behind intel-iommu
ON_ROOT = {"parent_bus": "/machine/q35/pcie.0", "addr": 24}  # slot 3 of pcie.0


def vfio_props(version: tuple[int, int, int], **values: object) -> dict[str, object]:
    """What a vfio-pci of that QEMU answers (defaults from device-list-properties)."""
    props: dict[str, object] = {"hotplugged": False, "host": "ffff:ff:ff.f", "sysfsdev": "",
                                "failover_pair_id": "", "x-pre-copy-dirty-page-tracking": "on"}
    if version >= (8, 1, 0):
        props["enable-migration"] = "auto"
    else:
        props["x-enable-migration"] = False
    if version >= (9, 0, 0):
        props["iommufd"] = ""
    if version >= (9, 1, 0):
        props.update({"x-device-dirty-page-tracking": "on", "migration-events": False})
    props.update(values)
    return props


def vfio_devices(version: tuple[int, int, int]) -> list[FakeDevice]:
    return [
        FakeDevice("/machine/peripheral/hostdev0", "vfio-pci", vfio_props(
            version, **ON_PXB, host="0000:3b:00.1", sysfsdev="/sys/bus/pci/devices/0000:3b:00.1",
            **{"migration-events": True} if version >= (9, 1, 0) else {}),
            replaces="/machine/peripheral/nic1"),
        FakeDevice("/machine/peripheral/hostdev1", "vfio-pci", vfio_props(
            version, **ON_RP0, sysfsdev="/sys/bus/pci/devices/0000:3b:00.2",
            failover_pair_id="net0",
            **{"enable-migration": "on"} if version >= (8, 1, 0) else {"x-enable-migration": True}),
            replaces="/machine/peripheral/nic0"),
        FakeDevice("/machine/peripheral-anon/device[1]", "vfio-pci-nohotplug", vfio_props(
            version, **ON_ROOT,
            **{"iommufd": "/objects/iommufd0"} if version >= (9, 0, 0) else {},
            **{"x-device-dirty-page-tracking": "off"} if version >= (9, 1, 0) else {}),
            replaces="/machine/peripheral-anon/device[1]"),
    ]


EXPECTED_10_0 = (
    VfioDevice("/machine/peripheral/hostdev0", "vfio-pci", "hostdev0", host="0000:3b:00.1",
               sysfsdev="/sys/bus/pci/devices/0000:3b:00.1", enable_migration="auto",
               device_dirty_page_tracking="on", pre_copy_dirty_page_tracking="on",
               migration_events=True, pci_addr="00.0", bus="/machine/peripheral/rp1/rp1",
               root_bus_bypass_iommu=True, realize_index=0),
    VfioDevice("/machine/peripheral/hostdev1", "vfio-pci", "hostdev1", host="ffff:ff:ff.f",
               sysfsdev="/sys/bus/pci/devices/0000:3b:00.2", enable_migration="on",
               device_dirty_page_tracking="on", pre_copy_dirty_page_tracking="on",
               migration_events=False, failover_pair_id="net0", pci_addr="00.0",
               bus="/machine/peripheral/rp0/rp0", root_bus_bypass_iommu=False, realize_index=1),
    VfioDevice("/machine/peripheral-anon/device[1]", "vfio-pci-nohotplug", None,
               host="ffff:ff:ff.f", sysfsdev=None, enable_migration="auto",
               device_dirty_page_tracking="off", pre_copy_dirty_page_tracking="on",
               migration_events=False, iommufd="/objects/iommufd0", pci_addr="03.0",
               bus="/machine/q35/pcie.0", root_bus_bypass_iommu=False, realize_index=2),
)


# --- tests -------------------------------------------------------------------------------


async def test_recorded_stand_ins_replay_exactly() -> None:
    """The recording still matches what the gatherer asks, command for command."""
    replay = Replay("q35-intel-pxb")
    topology, commands = await gather(replay, VFIO_TYPES | STAND_IN)
    recorded = sorted(key(e["execute"], e["arguments"]) for e in replay.doc["transcript"])
    assert sorted(key(c["execute"], c.get("arguments")) for c in commands) == recorded
    assert [(d.id, d.bus, d.root_bus_bypass_iommu, d.realize_index) for d in topology.devices] == [
        ("nic1", "/machine/peripheral/rp1/rp1", True, 0),
        ("nic0", "/machine/peripheral/rp0/rp0", False, 1),
        (None, "/machine/q35/pcie.0", False, 2),
    ]
    # a stand-in has none of the VFIO properties: QEMU's not-found errors become None
    assert topology.devices[0].host is None and topology.devices[0].enable_migration is None
    assert topology.viommus == (Viommu("/machine/peripheral-anon/device[0]", "intel-iommu",
                                       aw_bits=48, caching_mode=True, dma_translation=True),)
    assert topology.iommufd_objects == ("/objects/iommufd0",)
    assert topology.basics == VmBasics((10, 0, 2), "pc-q35-10.0", base_ram_bytes=256 * 2**20)
    assert any("vvfat (rw)" in r for r in topology.blocked_reasons)
    vmem = topology.memory_devices[0]
    assert (vmem.kind, vmem.id, vmem.addr, vmem.max_size) == ("virtio-mem", "vmem0", 2**32,
                                                              512 * 2**20)
    assert topology.flat_view is not None and topology.flat_view_source == "info mtree -f -o"
    assert any(s.name == "mem1" and s.start == 2**32 for s in topology.flat_view)


async def test_vfio_devices_on_10_0() -> None:
    replay = Replay("q35-intel-pxb", devices=vfio_devices((10, 0, 2)))
    topology, commands = await gather(replay)
    assert topology.devices == EXPECTED_10_0
    assert topology.devices[1].bdf == "0000:3b:00.2"
    # only VFIO devices, the vIOMMU and the bridges above VFIO devices are read
    read = {a["path"] for a in sent(commands, "qom-get")}
    assert read == {"/machine", "/machine/peripheral/hostdev0", "/machine/peripheral/hostdev1",
                    "/machine/peripheral-anon/device[1]", "/machine/peripheral-anon/device[0]",
                    "/machine/peripheral/rp0", "/machine/peripheral/rp1",
                    "/machine/peripheral/pxb1", "/machine/q35", "/machine/unattached/device[22]"}
    assert sent(commands, "qom-list-get") == []
    assert len(commands) == 63


async def test_qom_list_get_on_10_1_gives_the_same_facts_in_fewer_calls() -> None:
    replay = Replay("q35-intel-pxb", version=(10, 1, 0), devices=vfio_devices((10, 1, 0)))
    topology, commands = await gather(replay)
    assert topology.devices == EXPECTED_10_0
    assert {a["path"] for a in sent(commands, "qom-get")} == {"/machine"}
    batches = [a["paths"] for a in sent(commands, "qom-list-get")]
    assert batches == [
        sorted([d.path for d in replay.devices] + ["/machine/peripheral-anon/device[0]"]),
        ["/machine/peripheral/rp0", "/machine/peripheral/rp1", "/machine/q35"],
        ["/machine/peripheral/pxb1", "/machine/unattached/device[22]"],
    ]  # VFIO devices and vIOMMU, then one batch per bus level
    assert len(commands) == 15


@pytest.mark.parametrize(("version", "absent"), [
    ((8, 0, 0), {"enable-migration", "iommufd", "x-device-dirty-page-tracking",
                 "migration-events"}),
    ((8, 2, 0), {"x-enable-migration", "iommufd", "x-device-dirty-page-tracking",
                 "migration-events"}),
    ((9, 0, 0), {"x-enable-migration", "x-device-dirty-page-tracking", "migration-events"}),
    ((9, 1, 0), {"x-enable-migration"}),
])
async def test_older_qemus_are_asked_only_what_they_have(
    version: tuple[int, int, int], absent: set[str]
) -> None:
    replay = Replay("q35-intel-pxb", version=version, devices=vfio_devices(version))
    topology, commands = await gather(replay)
    asked = {a["property"] for a in sent(commands, "qom-get")
             if a["path"] == "/machine/peripheral/hostdev1"}
    assert asked.isdisjoint(absent)
    hostdev1 = topology.devices[1]
    if version < (8, 1, 0):
        assert (hostdev1.x_enable_migration, hostdev1.enable_migration) == (True, None)
    else:
        assert (hostdev1.x_enable_migration, hostdev1.enable_migration) == (None, "on")
    assert (hostdev1.iommufd, topology.devices[2].iommufd) == (
        (None, "/objects/iommufd0") if version >= (9, 0, 0) else (None, None))
    assert (hostdev1.migration_events is None) == (version < (9, 1, 0))


async def test_a_property_the_qemu_lacks_is_none_not_an_error() -> None:
    devices = vfio_devices((10, 0, 2))
    del devices[0].props["migration-events"]  # e.g. a distro QEMU without the backport
    topology, _ = await gather(Replay("q35-intel-pxb", devices=devices))
    assert topology.devices[0].migration_events is None
    assert topology.devices[1:] == EXPECTED_10_0[1:]


async def test_hot_plugged_device_comes_after_cold_ones() -> None:
    devices = vfio_devices((10, 0, 2))
    devices[0].props["hotplugged"] = True  # hostdev0, first by PCI placement
    topology, _ = await gather(Replay("q35-intel-pxb", devices=devices))
    assert [(d.id, d.realize_index) for d in topology.devices] == [
        ("hostdev1", 0), (None, 1), ("hostdev0", 2)]


async def test_missing_container_and_machine_properties() -> None:
    missing = QmpError("DeviceNotFound", "Device '/machine/peripheral-anon' not found")

    def qom_list(arguments: dict[str, Any]) -> object:
        if arguments["path"] == "/machine/peripheral-anon":
            return missing
        return replay.replayed("qom-list", arguments)

    def qom_get(arguments: dict[str, Any]) -> object:
        if arguments == {"path": "/machine", "property": "iommu"}:
            return "smmuv3"  # arm virt,iommu=smmuv3: the SMMU is machine-created
        return replay.replayed("qom-get", arguments)

    replay = Replay("q35-intel-pxb", devices=vfio_devices((10, 0, 2))[:2])
    replay.overrides = {"qom-list": qom_list, "qom-get": qom_get}
    topology, _ = await gather(replay)
    assert topology.devices == EXPECTED_10_0[:2]
    assert topology.viommus == (Viommu("/machine", "machine:smmuv3"),)


async def test_failed_flat_view_is_none_with_the_reason() -> None:
    replay = Replay("q35-intel-pxb", devices=vfio_devices((10, 0, 2)), overrides={
        "human-monitor-command": lambda _a: QmpError("GenericError", "mtree exploded")})
    topology, _ = await gather(replay)
    assert topology.flat_view is None
    assert topology.flat_view_source == (
        "unknown: human-monitor-command: GenericError: mtree exploded")


async def test_wrong_value_type_is_a_reply_error() -> None:
    devices = vfio_devices((10, 0, 2))
    devices[1].props["enable-migration"] = True  # OnOffAuto is a string
    with pytest.raises(QmpReplyError, match="hostdev1 enable-migration"):
        await gather(Replay("q35-intel-pxb", devices=devices))


async def test_device_gone_mid_gather_propagates() -> None:
    devices = vfio_devices((10, 0, 2))
    replay = Replay("q35-intel-pxb", devices=devices)

    def qom_get(arguments: dict[str, Any]) -> object:
        if arguments["path"] == "/machine/peripheral/hostdev0":
            return QmpError("DeviceNotFound", "Device '/machine/peripheral/hostdev0' not found")
        return replay.replayed("qom-get", arguments)

    replay.overrides = {"qom-get": qom_get}
    with pytest.raises(QmpCommandError) as err:
        await gather(replay)
    assert err.value.error_class == "DeviceNotFound"


async def test_firmware_scenario_virtio_iommu_and_default_bypass() -> None:
    topology, _ = await gather(Replay("q35-virtio-iommu-firmware"), VFIO_TYPES | STAND_IN)
    assert topology.viommus == (Viommu("/machine/peripheral/viommu0", "virtio-iommu-pci",
                                       aw_bits=39),)
    assert [(d.id, d.root_bus_bypass_iommu) for d in topology.devices] == [
        ("nic0", True), (None, True)]
    nic0 = {(b.bar, b.size) for b in topology.pci_bars if b.qdev_id == "nic0"}
    assert (4, 16384) in nic0 and (1, 4096) in nic0  # behind rp0: bridge devices recursed
    assert all(b.address != -1 for b in topology.pci_bars)
    assert topology.blocked_reasons == ()
