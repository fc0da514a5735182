"""The convergence model, the in-migration estimators and the dirty-rate provenance.

Every expected figure is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import pytest

from qmpdirty.decisions.migration.claim import ForecastClaim, ForecastVerdict, material_change
from qmpdirty.decisions.migration.dirtyrate import choose_mode
from qmpdirty.decisions.migration.estimate import Sample, bandwidth, dirty_rate
from qmpdirty.decisions.migration.forecast import (
    Advice,
    Forecast,
    ForecastInputs,
    forecast,
    recommend,
)
from qmpdirty.decisions.migration.uncertainty import Outlook
from qmpdirty.facts.vm import DirtyRateMeasurement, MigrationSnapshot

MIB = 2**20


def inputs(**over: float | int | bool | None) -> ForecastInputs:
    base: dict[str, object] = dict(bandwidth_bytes_per_s=100 * MIB, dirty_bytes_per_s=10 * MIB,
                                   remaining_bytes=1000 * MIB, downtime_limit_ms=300,
                                   ram_bytes=1024 * MIB, in_first_pass=False)
    base.update(over)
    return ForecastInputs(**base)  # type: ignore[arg-type]


def test_converging_migration() -> None:
    # budget = 100 MiB/s x 0.3 s = 30 MiB. Passes: 1000 MiB leave 10 x 10 = 100 MiB, which
    # leave 10 MiB <= 30: two. QEMU switches over once the pending data (1000 MiB now)
    # fits the budget, shrinking at 100 - 10 MiB/s: (1000 - 30) / 90 s, then the stop
    # sends the budget: 300 ms.
    f = forecast(inputs())
    assert f.converges is True and f.passes == 2
    assert f.eta_s == pytest.approx(970 / 90 + 0.3) and f.downtime_ms == pytest.approx(300)


def test_what_was_dirtied_since_the_pass_began_is_pending_too() -> None:
    # 2 s into the pass: 1000 + 10 x 2 = 1020 MiB pending: (1020 - 30) / 90 s + 0.3 s
    f = forecast(inputs(pass_elapsed_s=2.0))
    assert f.eta_s == pytest.approx(990 / 90 + 0.3)


def test_dirty_rate_at_or_above_bandwidth_never_converges() -> None:
    # budget 3 MiB; the 100 MiB pending grow by 20 - 10 MiB/s: never. Stopping now would
    # take 100/10 s = 10,000 ms.
    f = forecast(inputs(bandwidth_bytes_per_s=10 * MIB, dirty_bytes_per_s=20 * MIB,
                        remaining_bytes=100 * MIB))
    assert f.converges is False and f.eta_s is None and f.passes is None
    assert f.downtime_ms == pytest.approx(10_000)
    assert "at least the 10.0 MiB/s bandwidth" in f.notes[0]


def test_vfio_stop_copy_alone_over_the_budget() -> None:
    f = forecast(inputs(vfio_bytes=50 * MIB))  # 50 MiB > 30 MiB budget; 50/100 s = 500 ms
    assert f.converges is False and f.downtime_ms == pytest.approx(500)
    assert "VFIO stop-copy data" in f.notes[0]


def test_already_within_the_budget() -> None:
    f = forecast(inputs(remaining_bytes=10 * MIB))  # 10 MiB <= 30: switch over now
    assert (f.converges, f.passes) == (True, 0)
    assert f.eta_s == pytest.approx(0.1) and f.downtime_ms == pytest.approx(100)


def test_what_the_bulk_pass_sends_sets_its_duration() -> None:
    # the bulk pass sends 200 MiB (zero pages are nearly free): 2 s at 100 MiB/s, and
    # leaves 10 MiB/s x 2 s = 20 MiB <= 30
    f = forecast(inputs(in_first_pass=True, first_pass_bytes=200 * MIB))
    assert (f.converges, f.passes) == (True, 1)
    assert f.eta_s == pytest.approx(2.2) and f.downtime_ms == pytest.approx(200)


@pytest.mark.parametrize("unknown", ["bandwidth_bytes_per_s", "dirty_bytes_per_s",
                                     "remaining_bytes", "downtime_limit_ms"])
def test_unknown_input_gives_no_verdict(unknown: str) -> None:
    f = forecast(inputs(**{unknown: None}))
    assert f.converges is None and f.notes and f.notes[0].startswith("unknown:")


def test_recommendations_when_it_will_not_converge() -> None:
    i = inputs(bandwidth_bytes_per_s=10 * MIB, dirty_bytes_per_s=20 * MIB,
               remaining_bytes=100 * MIB)
    f = forecast(i)
    advice = {a.action: a for a in recommend(i, f, vcpus=2, has_vfio=True,
                                             qemu_version=(10, 0, 2), kvm=True)}
    # a pass leaves min(20 x 100/10, 1024) = 200 MiB dirty: 200/10 s = 20,000 ms (+1)
    assert advice["downtime-limit"].value == 20_001
    # half the bandwidth (5 MiB/s) over 2 vCPUs = 2.5 -> 2 MB/s each
    assert advice["dirty-limit"].value == 2 and advice["dirty-limit"].applicable
    assert advice["auto-converge"].applicable
    assert not advice["postcopy"].applicable  # QEMU refuses post-copy with VFIO
    assert advice["bandwidth"].value == 40 * MIB
    tcg = {a.action: a for a in recommend(i, f, vcpus=2, has_vfio=False,
                                          qemu_version=(10, 0, 2), kvm=False)}
    assert not tcg["dirty-limit"].applicable and tcg["postcopy"].applicable
    assert recommend(inputs(), forecast(inputs()), vcpus=1, has_vfio=False,
                     qemu_version=(10, 0, 2), kvm=True) == ()


def snap(**over: int | float | None) -> MigrationSnapshot:
    base: dict[str, object] = dict(status="active", page_size=4096, total_bytes=256 * MIB)
    base.update(over)
    return MigrationSnapshot(**base)  # type: ignore[arg-type]


def test_bandwidth_is_the_mean_of_the_last_three_readings() -> None:
    samples = [Sample(t, snap(bandwidth_bytes_per_s=v)) for t, v in
               enumerate([1.0, 0.0, 30.0, 60.0, 0.0])]
    assert bandwidth(samples) == pytest.approx(45.0)  # last three: 60, 0 (skipped), 30
    assert bandwidth([]) is None


def test_dirty_rate_sources_in_order() -> None:
    qemu = [Sample(0, snap(dirty_pages_rate=1000))]
    assert dirty_rate(qemu, None, None) is not None
    assert dirty_rate(qemu, None, None).source == "migration"  # type: ignore[union-attr]
    pre = DirtyRateMeasurement(8 * MIB, "page-sampling", 1.0, 512, None)
    est = dirty_rate([Sample(0, snap())], pre, 30.0)
    assert est is not None and est.source == "estimate" and est.bytes_per_s == 8 * MIB
    assert dirty_rate([Sample(0, snap())], pre, 3600.0) is None  # too old, one sample
    # 1 s: remaining 200 -> 180 MiB, processed 50 -> 80 MiB: re-dirty 10 MiB/s over the
    # 80/256 = 31.25 % already sent -> 32 MiB/s
    pages = MIB // 4096
    a = Sample(0.0, snap(remaining_bytes=200 * MIB, normal_pages=20 * pages,
                         zero_pages=30 * pages))
    b = Sample(1.0, snap(remaining_bytes=180 * MIB, normal_pages=40 * pages,
                         zero_pages=40 * pages))
    slope = dirty_rate([a, b], None, None)
    assert slope is not None and slope.bytes_per_s == pytest.approx(32 * MIB)




@pytest.mark.parametrize(("configured", "version", "vfio", "expected"), [
    ("page-sampling", (10, 0, 2), True, "page-sampling"),
    ("dirty-bitmap", (10, 0, 2), True, "page-sampling"),  # would start VFIO tracking
    ("dirty-bitmap", (9, 2, 0), True, "dirty-bitmap"),
    ("dirty-bitmap", (10, 0, 2), False, "dirty-bitmap"),
    ("dirty-ring", (10, 2, 0), False, "dirty-ring"),
])
def test_mode_choice(configured: str, version: tuple[int, int, int], vfio: bool,
                     expected: str) -> None:
    mode, why = choose_mode(configured, version, vfio)  # type: ignore[arg-type]
    assert mode == expected and (bool(why) == (mode != configured))


# --- when a new measurement republishes the forecast ------------------------------------

def _pub(converges: bool | None = True, eta: float | None = 100.0, downtime: float | None = 200.0,
         passes: int | None = 5, advice: tuple[Advice, ...] = ()) -> ForecastClaim:
    verdict: ForecastVerdict = ("unknown" if converges is None else
                                "converges" if converges else "does-not-converge")
    return ForecastClaim(verdict, True, None, (),
                         Outlook.single(Forecast(converges, eta, downtime, passes)), advice)


def _not(verdict: ForecastVerdict, reason: str, blockers: tuple[str, ...] = ()
         ) -> ForecastClaim:
    return ForecastClaim(verdict, verdict != "not-applicable", reason, blockers,
                         Outlook.single(Forecast(None, None, None, None)), ())


@pytest.mark.parametrize(("before", "after", "expected"), [
    (None, _pub(), True),  # nothing published yet
    (_pub(), _pub(), False),
    (_pub(eta=100.0), _pub(eta=109.0), False),  # a drift the periodic refresh carries
    (_pub(eta=100.0), _pub(eta=111.0), True),
    (_pub(downtime=200.0), _pub(downtime=170.0), True),
    (_pub(eta=100.0), _pub(eta=None), True),  # appeared or vanished
    (_pub(converges=True), _pub(converges=False), True),  # another verdict
    (_pub(passes=5), _pub(passes=6), True),
    (_pub(advice=(Advice("downtime-limit", 300.0, "r", True),)),
     _pub(advice=(Advice("downtime-limit", 320.0, "r", True),)), False),
    (_pub(advice=(Advice("downtime-limit", 300.0, "r", True),)),
     _pub(advice=(Advice("downtime-limit", 400.0, "r", True),)), True),
    (_pub(), _pub(advice=(Advice("auto-converge", None, "r", True),)), True),
    (_pub(), _not("not-applicable", "the guest is paused"), True),  # the role moved
    (_not("not-applicable", "the guest is paused"),
     _not("not-applicable", "waiting for an incoming migration"), True),
    (_not("not-applicable", "x"), _not("not-applicable", "x"), False),
    (_pub(), _not("blocked", "QEMU refuses", ("vvfat",)), True),
    (_not("blocked", "QEMU refuses", ("vvfat",)), _not("blocked", "QEMU refuses", ("a", "b")),
     True),  # other blockers
])
def test_material_change(before: ForecastClaim | None, after: ForecastClaim,
                         expected: bool) -> None:
    assert material_change(before, after) is expected
