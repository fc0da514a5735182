"""The sans-I/O topology query (qmp/topology/query.py), driven in-process: no socket, no loop.

Replies come from ``tests/data/topology/*.json`` (QEMU 10.0.2's own, recorded by
``record_topology.py``), answered through ``exchange.drive``; the same recordings are
replayed over a socket by ``tests/adapters/test_topology_gather.py``. Any reply QEMU
could send ends the query with a value, ``QmpReplyError`` or (an error reply it cannot
do without) ``QmpCommandError``, never another exception (hypothesis).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.demo.lab.recorded_topology import RecordedTopology
from qmpdirty.errors import InternalError, QmpCommandError, QmpReplyError
from qmpdirty.facts.topology import VFIO_TYPES, Viommu
from qmpdirty.facts.vm import VmBasics
from qmpdirty.qmp.topology.exchange import Failed, Request, Returned, drive
from qmpdirty.qmp.topology.query import (
    MUTABLE_CONTAINERS,
    ListingQuery,
    TopologyQuery,
)
from qmpdirty.qmp.topology.replies import QomChild

DATA = Path(__file__).resolve().parent.parent / "data" / "topology"
STAND_IN = VFIO_TYPES | {"virtio-net-pci"}
Arguments = Mapping[str, object] | None


def recorded(scenario: str, **overrides: object) -> RecordedTopology:
    """Answers from ``tests/data/topology/<scenario>.json`` (``overrides``: command -> reply)."""
    return RecordedTopology(DATA / f"{scenario}.json", **overrides)


def rounds(query: TopologyQuery, answer: RecordedTopology) -> list[list[Request]]:
    """Drive by hand, keeping each round's batch."""
    batches = []
    while batch := query.next_requests():
        batches.append(batch)
        query.receive([r if isinstance(r, Returned | Failed) else Returned(r)
                       for r in (answer(q.command, q.arguments) for q in batch)])
    return batches


def test_recorded_replies_give_the_topology_without_a_socket() -> None:
    answer = recorded("q35-intel-pxb")
    topology = drive(TopologyQuery(STAND_IN), answer)
    assert sorted(answer.asked) == answer.transcript  # the recording, command for command
    assert topology.basics == VmBasics((10, 0, 2), "pc-q35-10.0", base_ram_bytes=256 * 2**20)
    assert [(d.id, d.bus, d.root_bus_bypass_iommu, d.realize_index) for d in topology.devices] == [
        ("nic1", "/machine/peripheral/rp1/rp1", True, 0),
        ("nic0", "/machine/peripheral/rp0/rp0", False, 1),
        (None, "/machine/q35/pcie.0", False, 2),
    ]
    assert topology.viommus == (Viommu("/machine/peripheral-anon/device[0]", "intel-iommu",
                                       aw_bits=48, caching_mode=True, dma_translation=True),)
    assert topology.iommufd_objects == ("/objects/iommufd0",)
    assert any("vvfat (rw)" in r for r in topology.blocked_reasons)
    assert topology.flat_view is not None and topology.flat_view_source == "info mtree -f -o"


def test_rounds_and_a_known_version() -> None:
    batches = rounds(TopologyQuery(STAND_IN), recorded("q35-intel-pxb"))
    # 10.0: a qom-get per property (3 stand-ins x 11, intel-iommu 3), then 2 bus levels
    assert [len(b) for b in batches] == [9, 3, 36, 9, 6]
    first = [(r.command, r.optional) for r in batches[0]]
    assert first[0] == ("query-version", False)
    assert first[-2:] == [("qom-get", True), ("qom-get", True)]  # /machine type, iommu
    assert [r.command for r in batches[1]] == ["query-pci", "query-memory-devices",
                                               "human-monitor-command"]
    known = rounds(TopologyQuery(STAND_IN, version=(10, 0, 2)), recorded("q35-intel-pxb"))
    assert [r.command for r in known[0]] == [r.command for r in batches[0][1:]]
    assert known[1:] == batches[1:]


def test_without_vfio_devices_no_memory_map_and_a_cheap_refresh() -> None:
    answer = recorded("q35-intel-pxb")
    query = TopologyQuery()
    first = drive(query, answer)
    assert (first.devices, first.pci_bars, first.flat_view) == ((), (), None)
    assert first.flat_view_source.startswith("unknown: not gathered: the VM has no VFIO device")
    assert query.gathered is not None
    assert len(answer.asked) == 12  # round 1 and intel-iommu's 3 properties

    refresh = TopologyQuery(previous=query.gathered)
    assert [(r.command, r.arguments) for r in refresh.next_requests()] == [
        ("query-migrate", None), *(("qom-list", {"path": c}) for c in MUTABLE_CONTAINERS)]
    none_blocked = recorded("q35-intel-pxb", **{"query-migrate": {}})
    again = drive(refresh, none_blocked)
    assert len(none_blocked.asked) == 4
    assert again.blocked_reasons == () and again == type(first)(
        **{**{f: getattr(first, f) for f in first.__slots__}, "blocked_reasons": ()})


def test_a_new_device_turns_the_refresh_into_a_full_gather() -> None:
    query = TopologyQuery(STAND_IN - {"virtio-net-pci"})
    drive(query, recorded("q35-intel-pxb"))
    answer = recorded("q35-intel-pxb")
    answer.overrides["qom-list"] = []  # every container now lists other children
    refresh = TopologyQuery(previous=query.gathered)
    drive(refresh, answer)
    assert len(answer.asked) == 4 + 9  # the check, then round 1 (no devices listed now)


def test_failures_are_values_until_the_query_cannot_do_without() -> None:
    gone = Failed("DeviceNotFound", "Device '/machine/peripheral/rp0' not found")
    timed_out = Failed(None, "human-monitor-command: no reply within 5s")
    topology = drive(TopologyQuery(STAND_IN), recorded(
        "q35-intel-pxb", **{"human-monitor-command": timed_out}))
    assert topology.flat_view is None
    assert topology.flat_view_source == "unknown: human-monitor-command: no reply within 5s"
    with pytest.raises(QmpCommandError) as err:
        drive(TopologyQuery(STAND_IN), recorded("q35-intel-pxb", **{"qom-get": gone}))
    assert (err.value.command, err.value.error_class) == ("qom-get", "DeviceNotFound")
    with pytest.raises(QmpReplyError, match="query-memory-size-summary"):
        drive(TopologyQuery(), recorded("q35-intel-pxb", **{"query-memory-size-summary": []}))


def test_listing_keeps_qemus_order_and_a_missing_container_is_empty() -> None:
    def answer(command: str, arguments: Arguments) -> object:
        assert command == "qom-list" and arguments is not None
        if arguments["path"] == "/machine/peripheral-anon":
            return Failed("DeviceNotFound", "Device '/machine/peripheral-anon' not found")
        return [{"name": "type", "type": "string"}, {"name": "b", "type": "child<vfio-pci>"},
                {"name": "a", "type": "child<VGA>"}]

    listed = drive(ListingQuery(["/machine/peripheral", "/machine/peripheral-anon"]), answer)
    assert listed == {"/machine/peripheral": (QomChild("/machine/peripheral/b", "vfio-pci"),
                                              QomChild("/machine/peripheral/a", "VGA")),
                      "/machine/peripheral-anon": ()}


def test_the_exchange_is_checked() -> None:
    query = TopologyQuery()
    with pytest.raises(InternalError, match="not finished"):
        query.result()
    with pytest.raises(InternalError, match="1 replies for 9 requests"):
        query.receive([Returned({})])
    assert len(query.next_requests()) == 9  # a refused receive changes nothing


# --- anything QEMU could send -------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=8) | st.sampled_from(["on", "auto", "child<vfio-pci>", "child<pxb>",
                                              "/machine/q35/pcie.0", "smmuv3"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "type", "value", "properties", "qemu", "major", "minor",
                         "micro", "base-memory", "blocked-reasons", "bus", "devices"]),
        inner, max_size=4),
    max_leaves=15)
#: what QEMU can send: a value, or an error with a class
HOSTILE = st.one_of(JSON.map(Returned), st.builds(Failed, st.sampled_from(
    ["GenericError", "DeviceNotFound", "CommandNotFound"]), st.text(max_size=30)))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), version=st.none() | st.sampled_from([(8, 0, 0), (10, 1, 0)]))
def test_hostile_replies_end_in_a_value_or_a_qmp_error(data: st.DataObject,
                                                        version: tuple[int, int, int] | None
                                                        ) -> None:
    recording = recorded("q35-intel-pxb")

    def answer(command: str, arguments: Arguments) -> object:
        if data.draw(st.booleans()):
            return data.draw(HOSTILE)
        return recording.recorded(command, arguments) or Returned([])

    with contextlib.suppress(QmpReplyError, QmpCommandError):
        drive(TopologyQuery(STAND_IN, version=version), answer)


def test_basics_given_are_not_asked_again_and_are_the_topologys() -> None:
    basics = VmBasics((10, 0, 2), "pc-q35-10.0", base_ram_bytes=2**30)
    answer = recorded("q35-intel-pxb")
    alone = rounds(TopologyQuery(STAND_IN), recorded("q35-intel-pxb"))
    query = TopologyQuery(STAND_IN, basics=basics)
    given = rounds(query, answer)
    skipped = {"query-version", "query-memory-size-summary"}
    assert [(r.command, r.arguments) for r in given[0]] == [
        (r.command, r.arguments) for r in alone[0] if r.command not in skipped
        and r.arguments != {"path": "/machine", "property": "type"}]
    assert given[1:] == alone[1:]
    assert query.gathered is not None and query.gathered.topology.basics is basics

    first = TopologyQuery()  # no VFIO device: the next one is a refresh
    drive(first, recorded("q35-intel-pxb"))
    later = dataclasses.replace(basics, plugged_ram_bytes=2**30)
    refresh = TopologyQuery(previous=first.gathered, basics=later)
    assert drive(refresh, recorded("q35-intel-pxb")).basics is later
