"""QMP reply translation (qmp/translate.py, qmp/wire.py): query-migrate and query-dirty-rate.

On replies recorded from QEMU 10.0.2 (TCG guest dirtying memory, migration to ``exec:``
with ``max-bandwidth`` 16 MiB/s; tests/support/recorded_replies.py).
"""

from __future__ import annotations

import pytest

from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.qmp import translate
from tests.support.recorded_replies import MIB, load, recorded

#: what record_replies.py set with migrate-set-parameters before the snapshots
RECORDED_MAX_BANDWIDTH = 16 * MIB


# --- query-migrate ---------------------------------------------------------------------------


def test_no_migration_yet() -> None:
    snap = translate.migration_snapshot_from(load("query-migrate.none.json"))
    assert snap == MigrationSnapshot(status=None)
    assert snap.dirty_bytes_per_s is None


def test_setup_has_no_ram_stats() -> None:
    snap = translate.migration_snapshot_from(load("query-migrate.setup.json"))
    assert snap.status == "setup"
    assert snap.transferred_bytes is None
    assert snap.bandwidth_bytes_per_s is None


@pytest.mark.parametrize("name", recorded("query-migrate.active-*.json"))
def test_active_snapshot_units(name: str) -> None:
    raw = load(name)
    ram = raw["ram"]
    snap = translate.migration_snapshot_from(raw)
    assert snap.status == "active"
    assert snap.total_time_ms == raw["total-time"]
    assert snap.setup_time_ms == raw["setup-time"]
    assert snap.expected_downtime_ms == raw["expected-downtime"]
    assert snap.transferred_bytes == ram["transferred"]
    assert snap.remaining_bytes == ram["remaining"]
    assert snap.total_bytes == ram["total"] > 128 * MIB - 1
    assert snap.page_size == 4096
    assert snap.dirty_sync_count == ram["dirty-sync-count"]
    # ram.mbps is megabits per second
    assert snap.bandwidth_bytes_per_s == pytest.approx(ram["mbps"] * 1_000_000 / 8)
    # ... which max-bandwidth (16 MiB/s, in bytes) caps: a unit slip would be off by 8 or 1e6
    assert snap.bandwidth_bytes_per_s is not None
    assert 0.5 * RECORDED_MAX_BANDWIDTH < snap.bandwidth_bytes_per_s < 1.1 * RECORDED_MAX_BANDWIDTH
    # dirty-pages-rate is pages/s; 0 means "not known yet" (before the 2nd dirty sync)
    if ram["dirty-pages-rate"]:
        assert snap.dirty_bytes_per_s == ram["dirty-pages-rate"] * 4096.0
    else:
        assert snap.dirty_bytes_per_s is None
    assert snap.vfio_transferred_bytes is None
    assert snap.error_desc is None


def test_a_recorded_snapshot_has_a_dirty_rate_after_the_first_pass() -> None:
    snaps = [translate.migration_snapshot_from(load(n))
             for n in recorded("query-migrate.active-*.json")]
    known = [s for s in snaps if s.dirty_bytes_per_s is not None]
    assert known, "re-record: no snapshot after the second dirty sync"
    assert all(s.dirty_sync_count is not None and s.dirty_sync_count >= 2 for s in known)
    # the boot-sector guest dirties roughly 16 MiB/s under TCG
    assert all(1 * MIB < (s.dirty_bytes_per_s or 0) < 256 * MIB for s in known)


def test_completed_snapshot() -> None:
    raw = load("query-migrate.completed.json")
    snap = translate.migration_snapshot_from(raw)
    assert snap.status == "completed"
    assert snap.total_time_ms == raw["total-time"]
    assert snap.downtime_ms == raw["downtime"]
    assert snap.expected_downtime_ms is None
    assert snap.remaining_bytes == 0
    assert snap.transferred_bytes == raw["ram"]["transferred"]
    assert snap.dirty_bytes_per_s is None  # QEMU reports 0 once done


def test_failed_snapshot_has_error_desc() -> None:
    snap = translate.migration_snapshot_from(load("query-migrate.failed.json"))
    assert snap.status == "failed"
    assert snap.error_desc == "ram_save_setup failed: Input/output error"


@pytest.mark.parametrize(("name", "status"), [
    ("query-migrate.cancelling-or-cancelled.json", {"cancelling", "cancelled"}),
    ("query-migrate.cancelled.json", {"cancelled"}),
])
def test_cancel_snapshots(name: str, status: set[str]) -> None:
    assert translate.migration_snapshot_from(load(name)).status in status


def test_snapshot_optional_members() -> None:
    snap = translate.migration_snapshot_from({
        "status": "active",
        "ram": {"transferred": 1, "remaining": 2, "total": 3, "mbps": 8.0,
                "dirty-pages-rate": 10, "page-size": 65536},
        "vfio": {"transferred": 123},
        "cpu-throttle-percentage": 20,
        "blocked-reasons": ["VFIO device doesn't support migration"],
        "future-member": {"x": 1},
    })
    assert snap.bandwidth_bytes_per_s == 1_000_000.0
    assert snap.dirty_bytes_per_s == 655360.0
    assert snap.vfio_transferred_bytes == 123
    assert snap.throttle_percent == 20
    assert snap.blocked_reasons == ("VFIO device doesn't support migration",)


# --- query-dirty-rate ----------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "query-dirty-rate.unstarted.json", "query-dirty-rate.page-sampling.measuring.json",
    "query-dirty-rate.dirty-bitmap.measuring.json",
])
def test_dirty_rate_not_measured_yet(name: str) -> None:
    assert translate.dirty_rate_from(load(name)) is None


def test_dirty_rate_page_sampling_recorded() -> None:
    raw = load("query-dirty-rate.page-sampling.measured.json")
    m = translate.dirty_rate_from(raw)
    assert m is not None
    assert raw["dirty-rate"] > 0
    assert m.bytes_per_s == raw["dirty-rate"] * float(MIB)  # dirty-rate is MiB/s
    assert m.mode == "page-sampling"
    assert raw["calc-time-unit"] == "millisecond"
    assert m.window_s == pytest.approx(raw["calc-time"] / 1000)
    assert 0.4 < m.window_s < 1.0  # a 500 ms window was asked for
    assert m.sample_pages == 512
    assert m.started_at_s == float(raw["start-time"])
    assert m.vcpu_bytes_per_s == ()


def test_dirty_rate_dirty_bitmap_recorded() -> None:
    raw = load("query-dirty-rate.dirty-bitmap.measured.json")
    m = translate.dirty_rate_from(raw)
    assert m is not None
    assert m.mode == "dirty-bitmap"
    assert m.sample_pages is None  # only meaningful for page-sampling
    assert raw["calc-time-unit"] == "millisecond"
    assert m.window_s == pytest.approx(raw["calc-time"] / 1000)  # QEMU reports the real window
    assert 0.4 < m.window_s < 1.0
    assert m.bytes_per_s == 0.0  # dirty-bitmap reports 0 under TCG (runtime-notes)


def test_dirty_rate_queried_in_seconds() -> None:
    """A 500 ms window queried without calc-time-unit reads as 0 s (QEMU rounds down)."""
    m = translate.dirty_rate_from(load("query-dirty-rate.dirty-bitmap.measured.seconds.json"))
    assert m is not None
    assert m.window_s == 0.0


def test_dirty_rate_qemu_8_1_reply_without_unit_is_seconds() -> None:
    m = translate.dirty_rate_from({"status": "measured", "dirty-rate": 3, "calc-time": 2,
                                   "start-time": 100, "sample-pages": 256})
    assert m is not None
    assert (m.bytes_per_s, m.window_s, m.mode, m.sample_pages) == (3.0 * MIB, 2.0,
                                                                   "page-sampling", 256)


def test_dirty_rate_per_vcpu() -> None:
    m = translate.dirty_rate_from({
        "status": "measured", "dirty-rate": 5, "calc-time": 1000,
        "calc-time-unit": "millisecond", "mode": "dirty-ring",
        "vcpu-dirty-rate": [{"id": 0, "dirty-rate": 2}, {"id": 1, "dirty-rate": 3}],
    })
    assert m is not None
    assert m.vcpu_bytes_per_s == ((0, 2.0 * MIB), (1, 3.0 * MIB))
    assert m.window_s == 1.0
    assert m.sample_pages is None


def test_measured_without_a_rate_is_not_a_measurement() -> None:
    assert translate.dirty_rate_from({"status": "measured"}) is None

