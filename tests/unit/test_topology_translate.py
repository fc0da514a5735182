"""Topology translation (qmp/topology/replies.py, plan.py): pure, table-driven.

Replies come from ``tests/data/topology/*.json`` (QEMU 10.0.2, ``record_topology.py``)
where QEMU can give them; VFIO property maps use the types ``device-list-properties
vfio-pci`` reported. Any JSON QEMU could send either translates or raises
``QmpReplyError`` (hypothesis), never another exception.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.errors import QmpReplyError
from qmpdirty.facts.topology import VFIO_TYPES, MemoryDevice, PciBar, VfioDevice, Viommu
from qmpdirty.qmp.topology import plan
from qmpdirty.qmp.topology import replies as tw

DATA = Path(__file__).resolve().parent.parent / "data" / "topology"


def load(scenario: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"{scenario}.json").read_text())
    return doc


PXB = load("q35-intel-pxb")
FIRMWARE = load("q35-virtio-iommu-firmware")


def recorded(doc: dict[str, Any], command: str, **arguments: object) -> Any:
    for entry in doc["transcript"]:
        if entry["execute"] == command and entry["arguments"] == arguments:
            return entry["return"]
    raise AssertionError(f"{command} {arguments} not recorded")


def owners_of(doc: dict[str, Any]) -> dict[str, tw.BusOwner]:
    """Bus owners from the recorded properties of every object that was read."""
    return {
        path: tw.bus_owner_from(path, {p["name"]: p["value"] for p in props if "value" in p})
        for path, props in doc["objects"].items()
    }


# --- QOM -------------------------------------------------------------------------------------


def test_children_from_recorded_containers() -> None:
    anon = tw.children_from("/machine/peripheral-anon",
                            recorded(PXB, "qom-list", path="/machine/peripheral-anon"))
    assert anon == (tw.QomChild("/machine/peripheral-anon/device[0]", "intel-iommu"),
                    tw.QomChild("/machine/peripheral-anon/device[1]", "virtio-net-pci"))
    objects = tw.children_from("/objects", recorded(PXB, "qom-list", path="/objects"))
    assert tw.QomChild("/objects/iommufd0", "iommufd") in objects
    unattached = tw.children_from("/machine/unattached",
                                  recorded(PXB, "qom-list", path="/machine/unattached"))
    assert tw.QomChild("/machine/unattached/device[22]", "pxb-host") in unattached


@pytest.mark.parametrize(("error_class", "desc", "absent"), [
    ("GenericError", "Property 'virtio-net-pci.host' not found", True),
    ("GenericError", "Property 'pc-q35-10.0-machine.iommu' not found", True),
    ("DeviceNotFound", "Device '/machine/nothere' not found", False),
    ("GenericError", "Property 'vfio-pci.fd' is not readable", False),
    ("GenericError", "Property 'a.b' not found; and more", False),
])
def test_absent_property(error_class: str, desc: str, absent: bool) -> None:
    assert tw.is_absent_property(error_class, desc) is absent


def test_qom_list_get_shape_10_1() -> None:
    reply = [{"properties": [{"name": "host", "type": "str", "value": "0000:3b:00.1"},
                             {"name": "fd", "type": "string"},
                             {"name": "addr", "type": "str", "value": 0}]},
             {"properties": []}]
    assert tw.properties_from_list_get(["/a", "/b"], reply) == {
        "/a": {"host": "0000:3b:00.1", "addr": 0}, "/b": {}}
    with pytest.raises(QmpReplyError, match="1 results for 2 paths"):
        tw.properties_from_list_get(["/a", "/b"], reply[:1])
    with pytest.raises(QmpReplyError, match="qom-list-get"):
        tw.properties_from_list_get(["/a"], [{"props": []}])


HOSTDEV = tw.QomChild("/machine/peripheral/hostdev0", "vfio-pci")
ANON = tw.QomChild("/machine/peripheral-anon/device[3]", "vfio-pci")


@pytest.mark.parametrize(("child", "props", "expected"), [
    pytest.param(HOSTDEV, {
        "host": "0000:3b:00.1", "sysfsdev": "/sys/bus/pci/devices/0000:3b:00.1",
        "enable-migration": "auto", "x-device-dirty-page-tracking": "on",
        "x-pre-copy-dirty-page-tracking": "off", "migration-events": True, "iommufd": "",
        "failover_pair_id": "", "addr": 0x21, "parent_bus": "/machine/q35/pcie.0",
    }, VfioDevice(HOSTDEV.path, "vfio-pci", "hostdev0", "0000:3b:00.1",
                  "/sys/bus/pci/devices/0000:3b:00.1", "auto", device_dirty_page_tracking="on",
                  pre_copy_dirty_page_tracking="off", migration_events=True, pci_addr="04.1",
                  bus="/machine/q35/pcie.0", root_bus_bypass_iommu=True, realize_index=3),
        id="host= on 10.0"),
    pytest.param(ANON, {
        "host": "ffff:ff:ff.f", "sysfsdev": "", "iommufd": "/objects/iommufd0",
        "enable-migration": "on", "addr": -1, "failover_pair_id": "net0",
    }, VfioDevice(ANON.path, "vfio-pci", None, "ffff:ff:ff.f", None, "on",
                  iommufd="/objects/iommufd0", failover_pair_id="net0",
                  root_bus_bypass_iommu=True, realize_index=3),
        id="fd= passed, anonymous, failover, unassigned addr"),
    pytest.param(HOSTDEV, {"x-enable-migration": True, "host": "0000:01:00.0"},
                 VfioDevice(HOSTDEV.path, "vfio-pci", "hostdev0", "0000:01:00.0", None, None,
                            x_enable_migration=True, root_bus_bypass_iommu=True,
                            realize_index=3),
                 id="8.0: x-enable-migration only"),
])
def test_vfio_device_from(child: tw.QomChild, props: dict[str, object],
                          expected: VfioDevice) -> None:
    got = tw.vfio_device_from(child, props, bypass_iommu=True, realize_index=3)
    assert got == expected


@pytest.mark.parametrize(("name", "value"), [
    ("enable-migration", "maybe"), ("enable-migration", True), ("addr", "04.0"),
    ("addr", True), ("migration-events", 1), ("host", None), ("iommufd", 3),
])
def test_vfio_property_of_wrong_type(name: str, value: object) -> None:
    with pytest.raises(QmpReplyError, match=f"hostdev0 {name}"):
        tw.vfio_device_from(HOSTDEV, {name: value}, bypass_iommu=None, realize_index=0)


def test_viommus() -> None:
    intel = tw.QomChild("/machine/peripheral-anon/device[0]", "intel-iommu")
    props = {"aw-bits": 48, "caching-mode": True, "dma-translation": False}
    assert tw.viommu_from(intel, props) == Viommu(intel.path, "intel-iommu", 48, True, False)
    assert tw.machine_viommu("smmuv3", []) == Viommu("/machine", "machine:smmuv3")
    smmu = Viommu("/machine/unattached/device[5]", "arm-smmuv3")
    assert tw.machine_viommu("smmuv3", [smmu]) is None
    assert tw.machine_viommu("none", []) is None and tw.machine_viommu(None, []) is None
    with pytest.raises(QmpReplyError):
        tw.machine_viommu(["smmuv3"], [])


# --- what to ask ------------------------------------------------------------------------------


@pytest.mark.parametrize(("qom_type", "version", "expected"), [
    ("vfio-pci", (8, 0, 0), {"x-enable-migration"}),
    ("vfio-pci", (8, 1, 0), {"enable-migration"}),
    ("vfio-pci", (9, 0, 2), {"enable-migration", "iommufd"}),
    ("vfio-pci", (9, 1, 0), {"enable-migration", "iommufd", "x-device-dirty-page-tracking",
                             "migration-events"}),
    ("vfio-ccw", (10, 0, 0), {"iommufd"}),
])
def test_vfio_properties_by_version(qom_type: str, version: tuple[int, int, int],
                                    expected: set[str]) -> None:
    names = set(plan.vfio_properties(qom_type, version))
    optional = {"x-enable-migration", "enable-migration", "iommufd",
                "x-device-dirty-page-tracking", "migration-events"}
    assert names & optional == expected
    pci = {"host", "addr", "failover_pair_id", "x-pre-copy-dirty-page-tracking"}
    assert (pci <= names) == (qom_type != "vfio-ccw")
    assert {"parent_bus", "hotplugged", "sysfsdev"} <= names


def test_targets_and_wanted_properties() -> None:
    children = [
        tw.QomChild("/machine/peripheral/hostdev0", "vfio-pci"),
        tw.QomChild("/machine/peripheral-anon/device[0]", "intel-iommu"),
        tw.QomChild("/machine/unattached/device[9]", "arm-smmuv3"),
        tw.QomChild("/machine/unattached/device[10]", "vfio-pci"),  # not a -device: ignored
        tw.QomChild("/machine/peripheral/pxb1", "pxb-pcie"),
        tw.QomChild("/objects/iommufd0", "iommufd"),
        tw.QomChild("/objects/mem1", "memory-backend-ram"),
    ]
    targets = plan.targets_from(children, VFIO_TYPES)
    assert [c.path for c in targets.devices] == ["/machine/peripheral/hostdev0"]
    assert [c.qom_type for c in targets.viommus] == ["intel-iommu", "arm-smmuv3"]
    assert targets.expander_ids() == {"pxb1": "/machine/peripheral/pxb1"}
    assert [c.path for c in targets.iommufds] == ["/objects/iommufd0"]
    wanted = plan.wanted_properties(targets, (10, 0, 2))
    assert wanted["/machine/peripheral-anon/device[0]"] == (
        "aw-bits", "caching-mode", "dma-translation")
    assert "/machine/unattached/device[9]" not in wanted  # arm-smmuv3: nothing to read
    assert plan.uses_qom_list_get((10, 1, 0)) and not plan.uses_qom_list_get((10, 0, 2))


# --- placement and realize order ---------------------------------------------------------------


@pytest.mark.parametrize(("doc", "bus", "devfn", "expected"), [
    (PXB, "/machine/peripheral/rp1/rp1", 0,
     plan.Placement("/machine/q35/pcie.0", (8, 0, 0), True)),  # pxb1 slot 1, bypass_iommu
    (PXB, "/machine/peripheral/rp0/rp0", 0, plan.Placement("/machine/q35/pcie.0", (16, 0), False)),
    (PXB, "/machine/q35/pcie.0", 24, plan.Placement("/machine/q35/pcie.0", (24,), False)),
    (FIRMWARE, "/machine/peripheral/rp0/rp0", 0,
     plan.Placement("/machine/q35/pcie.0", (16, 0), True)),  # default-bus-bypass-iommu=on
    (PXB, "/machine/nowhere/bus", 8, plan.Placement(None, (8,), None)),
    (PXB, None, None, plan.Placement()),
])
def test_placement_from_recorded_buses(doc: dict[str, Any], bus: str | None, devfn: int | None,
                                       expected: plan.Placement) -> None:
    assert plan.placement_of(bus, devfn, owners_of(doc), {"pxb1": "/machine/peripheral/pxb1"}
                             ) == expected


def test_placement_of_a_bus_loop_ends() -> None:
    loop = {"/a": tw.BusOwner("/a", None, "/b/x", 8), "/b": tw.BusOwner("/b", None, "/a/y", 16)}
    assert plan.placement_of("/a/y", 0, loop, {}).root_bus is None


def test_walk_steps() -> None:
    owners = owners_of(PXB)
    assert plan.next_owners(["/machine/unattached/device[22]/pxb1", None], {},
                            {"pxb1": "/machine/peripheral/pxb1"}) == [
        "/machine/peripheral/pxb1", "/machine/unattached/device[22]"]
    assert plan.next_owners(["/machine/q35/pcie.0"], owners, {}) == []
    host, bridge = owners["/machine/q35"], owners["/machine/peripheral/rp0"]
    assert plan.buses_above([host, bridge]) == ["/machine/q35/pcie.0"]


P = plan.Placement
ROOT = "/machine/q35/pcie.0"


@pytest.mark.parametrize(("devices", "expected"), [
    pytest.param([("/machine/peripheral/b", False, P(ROOT, (16, 0))),
                  ("/machine/peripheral/a", False, P(ROOT, (8, 0)))], [1, 0], id="by slot"),
    pytest.param([("/machine/peripheral/a", True, P(ROOT, (8,))),
                  ("/machine/peripheral/b", False, P(ROOT, (16,)))], [1, 0], id="hot last"),
    pytest.param([("/machine/peripheral-anon/device[10]", False, P(ROOT, (8,))),
                  ("/machine/peripheral-anon/device[9]", False, P(ROOT, (16,))),
                  ("/machine/peripheral/x", False, P(ROOT, (12,)))], [2, 0, 1],
                 id="anonymous keep their counter order"),
    pytest.param([("/machine/peripheral/ccw", False, P()),
                  ("/machine/peripheral/pci", False, P(None, (8,)))], [1, 0],
                 id="non-PCI after PCI"),
    pytest.param([("/machine/peripheral/x", None, P("/r/pcie.10", (0,))),
                  ("/machine/peripheral/y", None, P("/r/pcie.9", (0,)))], [1, 0],
                 id="natural order of root buses"),
])
def test_realize_order(devices: list[tuple[str, bool | None, plan.Placement]],
                       expected: list[int]) -> None:
    paths, hot, placements = zip(*devices, strict=True)
    assert plan.realize_order(paths, hot, placements) == expected


# --- queries ----------------------------------------------------------------------------------


def test_pci_bars_from_recorded_firmware() -> None:
    bars = tw.pci_bars_from(recorded(FIRMWARE, "query-pci"))
    assert PciBar("nic0", 1, 0, 0, 4, "memory", 4269801472, 16384, mem_type_64=True,
                  prefetch=True) in bars  # behind rp0: found through pci_bridge.devices
    assert {b.kind for b in bars} == {"memory", "io"}
    assert all(b.address != -1 for b in bars)
    assert any(b.qdev_id is None for b in bars)  # "" qdev_id of anonymous devices
    assert tw.pci_bars_from(recorded(PXB, "query-pci")) == ()  # -S: nothing assigned yet


@pytest.mark.parametrize(("reply", "expected"), [
    pytest.param(recorded(PXB, "query-memory-devices"),
                 [MemoryDevice("virtio-mem", "vmem0", 2**32, 0, 512 * 2**20, "/objects/mem1")],
                 id="recorded virtio-mem"),
    pytest.param([{"type": "dimm", "data": {"id": "d0", "addr": 2**33, "size": 2**30, "slot": 0,
                                            "node": 0, "memdev": "/objects/m0",
                                            "hotplugged": False, "hotpluggable": True}},
                  {"type": "nvdimm", "data": {"addr": 2**34, "size": 2**29, "slot": 1, "node": 0,
                                              "memdev": "/objects/m1", "hotplugged": True,
                                              "hotpluggable": True}}],
                 [MemoryDevice("dimm", "d0", 2**33, 2**30, None, "/objects/m0"),
                  MemoryDevice("nvdimm", None, 2**34, 2**29, None, "/objects/m1")], id="dimms"),
    pytest.param([{"type": "virtio-pmem", "data": {"id": "p", "memaddr": 2**35, "size": 4096,
                                                   "memdev": "/objects/m2"}},
                  {"type": "sgx-epc", "data": {"memaddr": 2**36, "size": 8192, "node": 0,
                                               "memdev": "/objects/m3"}},
                  {"type": "hv-balloon", "data": {"id": "hv", "max-size": 2**31}}],
                 [MemoryDevice("virtio-pmem", "p", 2**35, 4096, None, "/objects/m2"),
                  MemoryDevice("sgx-epc", None, 2**36, 8192, None, "/objects/m3"),
                  MemoryDevice("hv-balloon", "hv", None, 0, 2**31, None)], id="the others"),
])
def test_memory_devices(reply: object, expected: list[MemoryDevice]) -> None:
    assert list(tw.memory_devices_from(reply)) == expected


def test_blocked_reasons_and_flat_view() -> None:
    reasons = tw.blocked_reasons_from(recorded(PXB, "query-migrate"))
    assert [r.split("'")[0] for r in reasons] == ["The qcow format used by node ",
                                                  "The vvfat (rw) format used by node "]
    assert tw.blocked_reasons_from(recorded(FIRMWARE, "query-migrate")) == ()
    text = recorded(PXB, "human-monitor-command", **{"command-line": "info mtree -f -o"})
    sections, source = tw.flat_view_from(text)
    assert source == "info mtree -f -o" and sections is not None
    mem1 = next(s for s in sections if s.name == "mem1")
    assert (mem1.start, mem1.end, mem1.kind, mem1.owner) == (
        2**32, 2**32 + 512 * 2**20 - 1, "ram", "/objects/mem1")
    assert tw.flat_view_from("FlatView #0\n AS \"I/O\", root: io\n") == (
        None, 'unknown: no flat view of address space "memory" in info mtree -f -o')
    with pytest.raises(QmpReplyError):
        tw.flat_view_from({"not": "text"})


# --- anything QEMU could send: a value or QmpReplyError, nothing else -------------------------

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=12)
           | st.sampled_from(["on", "off", "auto", "memory", "io", "child<vfio-pci>",
                              "/machine/q35/pcie.0", "virtio-mem", "dimm"]))
NAMES = st.sampled_from([
    "name", "type", "value", "properties", "bus", "slot", "function", "qdev_id", "regions",
    "pci_bridge", "devices", "bar", "address", "size", "prefetch", "mem_type_64", "data", "id",
    "addr", "memaddr", "max-size", "memdev", "blocked-reasons", "base-memory", "status",
])
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(NAMES | st.text(max_size=6), inner, max_size=5),
                    max_leaves=25)
PROPERTY_MAPS = st.dictionaries(
    st.sampled_from(sorted(set(plan.vfio_properties("vfio-pci", (10, 0, 0)))
                           | {"x-enable-migration", "aw-bits", "caching-mode",
                              "dma-translation", "bypass-iommu"})), JSON, max_size=6)

TRANSLATORS: list[Callable[[Any], object]] = [
    lambda r: tw.children_from("/machine/peripheral", r),
    lambda r: tw.properties_from_list_get(["/a"], r),
    tw.pci_bars_from, tw.memory_devices_from, tw.blocked_reasons_from,
    tw.flat_view_from, lambda r: tw.machine_viommu(r, []),
]


@settings(max_examples=300, deadline=None)
@given(reply=JSON, which=st.integers(min_value=0, max_value=len(TRANSLATORS) - 1))
def test_any_reply_translates_or_raises_reply_error(reply: object, which: int) -> None:
    with contextlib.suppress(QmpReplyError):
        TRANSLATORS[which](reply)


@settings(max_examples=300, deadline=None)
@given(props=PROPERTY_MAPS)
def test_any_property_values_translate_or_raise_reply_error(props: dict[str, object]) -> None:
    for translate in (
        lambda: tw.vfio_device_from(HOSTDEV, props, bypass_iommu=None, realize_index=0),
        lambda: tw.viommu_from(HOSTDEV, props),
        lambda: tw.bus_owner_from("/x", props),
        lambda: tw.hotplugged_of("/x", props),
    ):
        with contextlib.suppress(QmpReplyError):
            translate()
