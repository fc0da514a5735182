"""The sans-I/O query behind ``qmpdirty ranges``: one round, only what the caller does not
know, replies parsed in the query (driven in-process, no socket)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from qmpdirty.errors import QmpCommandError, QmpReplyError
from qmpdirty.qmp.topology.exchange import Failed, drive
from qmpdirty.qmp.topology.memory_view import MemoryViewQuery
from qmpdirty.qmp.topology.mtree import flat_view_for

TEXT = (Path(__file__).resolve().parents[1] / "data" / "mtree" / "q35-vga-ivshmem.txt"
        ).read_text()
VERSION = {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""}
LISTED: dict[str, object] = {
    "/machine/peripheral": [{"name": "type", "type": "string"},
                            {"name": "hostdev0", "type": "child<vfio-pci>"},
                            {"name": "vga0", "type": "child<VGA>"}],
    "/machine/peripheral-anon": [{"name": "device[0]", "type": "child<vfio-pci-nohotplug>"}],
}


class Qemu:
    """Answers as QEMU does and records what was asked, round by round."""

    def __init__(self, flat_view: object = TEXT) -> None:
        self.flat_view = flat_view
        self.asked: list[str] = []

    def __call__(self, command: str, arguments: Mapping[str, object] | None) -> object:
        self.asked.append(command if command != "qom-list" else f"qom-list {arguments}")
        if command == "query-version":
            return VERSION
        if command == "human-monitor-command":
            return self.flat_view
        return LISTED[str((arguments or {})["path"])]


def test_asks_everything_in_one_round_when_nothing_is_known() -> None:
    qemu = Qemu()
    query = MemoryViewQuery()
    assert len(query.next_requests()) == 4
    read = drive(query, qemu)
    assert read.version == (10, 0, 2) and read.mtree_text == TEXT
    assert read.sections == flat_view_for(TEXT, "memory") and read.sections
    assert read.vfio_owners == ("hostdev0", "/machine/peripheral-anon/device[0]")


def test_what_the_caller_knows_is_not_asked() -> None:
    qemu = Qemu()
    read = drive(MemoryViewQuery(version=(9, 2, 0), vfio_owners=["/objects/shm"]), qemu)
    assert qemu.asked == ["human-monitor-command"]
    assert (read.version, read.vfio_owners) == ((9, 2, 0), ("/objects/shm",))


def test_a_text_without_the_memory_view_parses_to_none() -> None:
    assert drive(MemoryViewQuery(version=(10, 0, 0)), Qemu("no views here\n")).sections is None


@pytest.mark.parametrize(("flat_view", "error"), [
    (Failed("GenericError", "no monitor"), QmpCommandError),  # needed: not optional here
    ({"not": "text"}, QmpReplyError),
])
def test_the_flat_view_is_needed(flat_view: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="human-monitor-command"):
        drive(MemoryViewQuery(), Qemu(flat_view))
