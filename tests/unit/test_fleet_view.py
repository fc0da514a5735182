"""``qmpdirty top``'s rows, from retained payloads (telemetry.fleet_view, pure)."""

from __future__ import annotations

import pytest

from qmpdirty.telemetry.fleet_view import FleetState, VmRow, bar, duration, rows
from tests.support import fleet_payloads as p


def fleet(*states: dict[str, bytes], prefix: str = "qmpdirty") -> FleetState:
    made = FleetState(prefix)
    for state in states:
        for topic, payload in state.items():
            made.apply(topic, payload)
    return made


def only(made: FleetState) -> VmRow:
    (row,) = rows(made)
    return row


def test_a_full_row() -> None:
    row = only(fleet(p.vm_state("h1", "web1", modes=("device", "device", "iommu"),
                                mib_per_s=12.5, migrating=True)))
    assert (row.host, row.vm, row.status, row.role) == ("h1", "web1", "online", "running")
    assert row.migratable == "yes"
    assert row.vfio == "device x2, iommu"
    assert row.dirty == "12.5 MiB/s ±8%"
    assert row.forecast == "converges 42s"
    assert row.migration == "source active pass 2"
    assert row.progress == pytest.approx(0.75) and row.eta_s == 7.0


@pytest.mark.parametrize(("kind", "payload", "field", "shown"), [
    ("blockers", p.blockers("h", "v", migratable=False), "migratable", f"no: {p.BLOCKER}"),
    ("tracking", p.tracking("h", "v"), "vfio", "none"),
    ("dirty_rate", p.dirty_rate("h", "v", 1.0, bound=None), "dirty", "1.0 MiB/s"),
    ("forecast", p.forecast("h", "v", eta_s=None), "forecast", "does-not-converge"),
    ("forecast", p.forecast("h", "v", eta_s=3700), "forecast", "converges 1h01m"),
    ("migration", p.migration("h", "v", status="completed"), "migration", "completed"),
    ("info", b'{"not": "an info"}', "role", "?"),
    ("tracking", b"garbage", "vfio", "?"),
])
def test_cells(kind: str, payload: bytes, field: str, shown: str) -> None:
    made = fleet({"qmpdirty/h/vm/v/status": b"online", f"qmpdirty/h/vm/v/{kind}": payload})
    assert getattr(only(made), field) == shown


def test_missing_topics_show_a_dash_and_ended_migration_has_no_bar() -> None:
    row = only(fleet({"qmpdirty/h/vm/v/status": b"offline",
                      "qmpdirty/h/vm/v/migration": p.migration("h", "v", status="failed")}))
    assert (row.role, row.migratable, row.vfio, row.dirty, row.forecast) == ("-",) * 5
    assert row.progress is None and row.migration == "failed"


def test_an_empty_payload_clears_and_a_vm_with_nothing_left_goes() -> None:
    made = fleet(p.vm_state("h", "v"))
    made.apply("qmpdirty/h/vm/v/dirty_rate", b"")
    assert only(made).dirty == "-"
    for topic in list(p.vm_state("h", "v")):
        made.apply(topic, b"")
    assert rows(made) == []


def test_host_offline_makes_its_statuses_stale() -> None:
    made = fleet(p.vm_state("h", "v"), {"qmpdirty/h/status": b"offline"})
    assert only(made).status == "host-offline"


def test_other_topics_and_prefixes_are_ignored() -> None:
    made = FleetState("site/a")
    assert not made.apply("qmpdirty/h/vm/v/status", b"online")
    assert not made.apply("site/a/h/vm/v/event/STOP", b"{}")
    assert not made.apply("site/a/h/daemon", b"{}")
    assert made.apply("site/a/h/vm/v/status", b"online")
    assert [(r.host, r.vm) for r in rows(made)] == [("h", "v")]


def test_sorting() -> None:
    made = fleet(p.vm_state("a", "slow", mib_per_s=1, status="online"),
                 p.vm_state("b", "busy", mib_per_s=90, status="error"),
                 p.vm_state("a", "moving", mib_per_s=5, status="unresponsive", migrating=True))
    assert [r.vm for r in rows(made, "name")] == ["moving", "slow", "busy"]
    assert [r.vm for r in rows(made, "status")] == ["busy", "moving", "slow"]
    assert [r.vm for r in rows(made, "dirty")] == ["busy", "moving", "slow"]
    assert [r.vm for r in rows(made, "eta")] == ["moving", "slow", "busy"]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.4, "59s"), (187, "3m07s"),
                                               (7500, "2h05m")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_bar() -> None:
    assert bar(0.45, width=10) == "[####------]  45%"
    assert bar(1.0, width=4) == "[####] 100%"
