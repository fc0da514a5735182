"""What qmpdirty reads of a VM's memory for the forecast, from replies recorded on QEMU
10.0.2 with the lab's Linux guest and its virtio-balloon driver
(``tests/data/record_balloon.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.errors import QmpReplyError
from qmpdirty.facts.qemu import MAX_BANDWIDTH_DEFAULT
from qmpdirty.qmp import translate
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.topology.exchange import Failed, drive
from qmpdirty.qmp.topology.query import PERIPHERALS, ListingQuery

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2-balloon"


def load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def test_qemus_default_max_bandwidth_is_the_one_recorded() -> None:
    params = translate.migration_params_from(load("query-migrate-parameters.default.json"))
    assert params.max_bandwidth_bytes_per_s == MAX_BANDWIDTH_DEFAULT == 128 * 2**20


def test_the_balloon_is_found_under_peripheral_by_its_qom_type() -> None:
    listed = drive(ListingQuery(PERIPHERALS), lambda _command, arguments: (
        load("qom-list.peripheral.json") if arguments == {"path": "/machine/peripheral"}
        else Failed("DeviceNotFound", "no peripheral-anon")))
    assert translate.balloon_in(listed) == "/machine/peripheral/balloon0"
    del listed["/machine/peripheral"]
    assert translate.balloon_in(listed) is None


def test_a_vm_without_a_balloon_says_so() -> None:
    error = load("error.query-balloon.no-balloon.json")["error"]
    assert error["class"] == "DeviceNotActive"  # what balloon_path takes for "none"


def test_guest_stats_once_the_guest_reports() -> None:
    stats = translate.guest_memory_from(load("qom-get.guest-stats.reported.json"))
    assert stats is not None
    reply = load("qom-get.guest-stats.reported.json")
    assert stats.free_bytes == reply["stats"]["stat-free-memory"]
    assert stats.total_bytes == reply["stats"]["stat-total-memory"]
    assert stats.updated_at_s == reply["last-update"]
    assert stats.total_bytes is not None
    assert 0 < stats.free_bytes < stats.total_bytes <= 256 * 2**20  # a 256 MiB guest


def test_guest_stats_of_a_guest_without_a_driver_are_none() -> None:
    # nothing reported: every stat 2^64-1, last-update 0
    assert translate.guest_memory_from(load("qom-get.guest-stats.no-driver.json")) is None


def test_the_drivers_first_report_dates_from_its_load() -> None:
    """Before a polling interval is set the driver reported once, at boot: the figures
    carry that time, and the forecast ignores them once ``GUEST_STATS_MAX_AGE_S`` old."""
    at_boot = translate.guest_memory_from(load("qom-get.guest-stats.at-boot.json"))
    later = translate.guest_memory_from(load("qom-get.guest-stats.reported.json"))
    assert at_boot is not None and later is not None
    assert at_boot.updated_at_s <= later.updated_at_s


@pytest.mark.parametrize("reply", [
    {"stats": {"stat-free-memory": -1}, "last-update": 5},
    {"stats": {}},
    "nonsense",
])
def test_broken_guest_stats_are_rejected(reply: object) -> None:
    with pytest.raises(QmpReplyError, match="guest-stats"):
        translate.guest_memory_from(reply)


def test_reading_guest_stats_changes_nothing() -> None:
    """The daemon reads; the polling interval is the operator's (libvirt: <stats period>)."""
    policy = CommandPolicy()
    assert policy.allows("query-balloon", None)
    assert policy.allows("qom-get", {"path": "/machine/peripheral/balloon0",
                                     "property": "guest-stats"})
    assert not policy.allows("qom-set", {"path": "/machine/peripheral/balloon0",
                                         "property": "guest-stats-polling-interval",
                                         "value": 2})
    assert not policy.allows("balloon", {"value": 2**28})
