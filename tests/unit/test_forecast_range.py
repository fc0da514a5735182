"""The forecast's range: the model at both ends of its inputs, the bulk pass's content,
and what the payloads say of them (README § Dirty rate, forecast and advice).

Every expected figure is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import json

import pytest

from qmpdirty.config.sections import ForecastConfig
from qmpdirty.decisions.admission import forecast_line
from qmpdirty.decisions.migration import firstpass
from qmpdirty.decisions.migration.claim import claim, material_change
from qmpdirty.decisions.migration.forecast import ForecastInputs, forecast
from qmpdirty.decisions.migration.forecaster import QEMU_DEFAULT_NOTE, Forecaster
from qmpdirty.decisions.migration.policy import downtime_to_apply
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.decisions.migration.uncertainty import Outlook, Span, outlook
from qmpdirty.decisions.role import role_of
from qmpdirty.facts.qemu import MAX_BANDWIDTH_DEFAULT
from qmpdirty.facts.vm import (
    DirtyRateMeasurement,
    GuestMemoryStats,
    GuestResidency,
    MigrationParams,
    MigrationSnapshot,
    VmBasics,
    VmInfo,
)
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import VmStamp
from qmpdirty.telemetry.render import forecast as fc
from qmpdirty.telemetry.topics import Topics

MIB = 2**20
PAGE = 4096
STAMP = VmStamp(Topics("qmpdirty", "h1"), "vm1", 1, 100.0)


def inputs(**over: float | int | bool | None) -> ForecastInputs:
    base: dict[str, object] = dict(bandwidth_bytes_per_s=100 * MIB, dirty_bytes_per_s=50 * MIB,
                                   remaining_bytes=1000 * MIB, downtime_limit_ms=300,
                                   ram_bytes=1024 * MIB, in_first_pass=False)
    base.update(over)
    return ForecastInputs(**base)  # type: ignore[arg-type]


# --- spans ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "bound", "expected"), [
    (10.0, 0.2, Span(8.0, 10.0, 12.0)),
    (10.0, 1.5, Span(0.0, 10.0, 25.0)),  # never below 0
    (10.0, None, Span(10.0, 10.0, 10.0)),  # unknown: a point (the caller says so)
    (10.0, 0.0, Span(10.0, 10.0, 10.0)),
])
def test_span_from_a_relative_bound(value: float, bound: float | None, expected: Span) -> None:
    assert Span.relative(value, bound) == pytest.approx(expected)


# --- the verdict at both ends ---------------------------------------------------------------


@pytest.mark.parametrize(("dirty", "bandwidth", "verdict", "converges"), [
    # D 50 +- 10 % against B 100: both ends converge
    (Span.relative(50 * MIB, 0.1), None, "converges", True),
    # D 95 +- 10 % = 85.5 .. 104.5 against B 100: only the low end converges
    (Span.relative(95 * MIB, 0.1), None, "uncertain", None),
    # D 120 +- 10 % = 108 .. 132 against B 100: neither
    (Span.relative(120 * MIB, 0.1), None, "does-not-converge", False),
    # D exact 90, B 80 .. 120: the high bandwidth converges, the low does not
    (None, Span(80 * MIB, 100 * MIB, 120 * MIB), "uncertain", None),
])
def test_the_verdict_at_both_ends(dirty: Span | None, bandwidth: Span | None, verdict: str,
                                  converges: bool | None) -> None:
    central = dirty.central if dirty else 90 * MIB
    o = outlook(inputs(dirty_bytes_per_s=central), dirty=dirty, bandwidth=bandwidth)
    assert (o.verdict, o.converges) == (verdict, converges)


def test_uncertain_has_no_upper_eta_and_the_central_figures_stay() -> None:
    # D 85 +- 15 % = 72.25 .. 97.75 against B 100, budget 30 MiB, at most 30 passes.
    # central: 1000 x 0.85^n <= 30 after 22 passes; (1000 - 30) / 15 s + 0.3 s of stop;
    # best (stop not counted): (1000 - 30) / 27.75 s; worst: 1000 x 0.9775^n needs 155
    o = UNCERTAIN
    assert (o.verdict, o.central.converges, o.central.passes) == ("uncertain", True, 22)
    assert o.central.eta_s == pytest.approx(970 / 15 + 0.3)
    assert o.eta_s_low == pytest.approx(970 / 27.75)
    assert o.eta_s_high is None
    # the stop sends the budget (300 ms) at both converging runs; stopping the worst now
    # would take 1000 MiB / 100 MiB/s
    assert (o.downtime_ms_low, o.downtime_ms_high) == pytest.approx((300.0, 10_000.0))
    # downtime: 300 ms at the ends that converge, 1000 MiB / 100 MiB/s if stopped now
    assert (o.downtime_ms_low, o.downtime_ms_high) == pytest.approx((300.0, 10_000.0))


UNCERTAIN = outlook(inputs(dirty_bytes_per_s=85 * MIB), dirty=Span.relative(85 * MIB, 0.15))


def test_an_unknown_input_is_unknown_at_every_end() -> None:
    o = outlook(inputs(bandwidth_bytes_per_s=None), dirty=Span.relative(50 * MIB, 0.5))
    assert (o.verdict, o.converges, o.eta_s_low, o.eta_s_high) == ("unknown", None, None, None)


def test_no_range_is_one_run() -> None:
    o = outlook(inputs())
    assert o.best is o.central is o.worst and o.verdict == "converges"


def test_the_eta_range_from_the_first_pass() -> None:
    # bulk pass of 1000 MiB of RAM with 100 to 1000 MiB of content (central 400), D 10 MiB/s,
    # B 100 MiB/s, budget 30 MiB; content bytes cost 4104/4096, zero pages 9 bytes
    first = Span(*(firstpass.wire_bytes(c * MIB, 1000 * MIB) for c in (100, 400, 1000)))
    i = inputs(dirty_bytes_per_s=10 * MIB, in_first_pass=True, first_pass_bytes=first.central)
    o = outlook(i, first_pass=first)

    def eta(content_mib: float, stop: bool) -> float:
        t1 = firstpass.wire_bytes(content_mib * MIB, 1000 * MIB) / (100 * MIB)
        pending = 10 * t1  # MiB dirtied during the bulk pass
        tail = max(0.0, pending - 30) / 90 + (0.3 if stop and pending > 30 else 0.0)
        return t1 + tail + (pending / 100 if stop and pending <= 30 else 0.0)

    assert o.eta_s_low == pytest.approx(eta(100, stop=False))
    assert o.central.eta_s == pytest.approx(eta(400, stop=True))
    assert o.eta_s_high == pytest.approx(eta(1000, stop=True))
    low, central, high = o.eta_s_low, o.central.eta_s, o.eta_s_high
    assert low is not None and central is not None and high is not None
    assert low < central < high


def test_the_end_of_the_bulk_pass_does_not_fit_with_what_it_let_the_guest_dirty() -> None:
    # 3 MiB left of the bulk pass (under the 4.8 MiB budget of 16 MiB/s x 0.3 s), but 20 s
    # into it at 4 MiB/s: 80 MiB dirtied since the first sync are pending too. The rest of
    # the pass takes 3/16 s; then (4 x 20.1875 - 4.8) / (16 - 4) s and the 0.3 s stop
    f = forecast(inputs(bandwidth_bytes_per_s=16 * MIB, dirty_bytes_per_s=4 * MIB,
                        remaining_bytes=3 * MIB, in_first_pass=True, first_pass_bytes=3 * MIB,
                        pass_elapsed_s=20.0))
    assert f.converges is True
    assert f.eta_s == pytest.approx(3 / 16 + (4 * 20.1875 - 4.8) / 12 + 0.3)


# --- the first pass -----------------------------------------------------------------------------


def test_wire_bytes_of_a_pass() -> None:
    # 1 MiB with content (256 pages of 4096 + 8) and 3 MiB of zero pages (768 x 9)
    assert firstpass.wire_bytes(MIB, 4 * MIB) == 256 * 4104 + 768 * 9
    assert firstpass.wire_bytes(0, 4 * MIB) == 1024 * 9
    assert firstpass.wire_bytes(5 * MIB, 4 * MIB) == 1024 * 4104  # never more than covered


RAM = 512 * MIB
GUEST = GuestMemoryStats(free_bytes=378 * MIB, total_bytes=470 * MIB, updated_at_s=98.0)
SEEN = firstpass.ContentSeen(content_bytes=139 * MIB, covered_bytes=506 * MIB, at_s=50.0)


@pytest.mark.parametrize(("guest", "previous", "now", "dirtied", "expected"), [
    (None, None, 100.0, 0, (0, 512, 512, "unknown")),
    (None, None, 100.0, 16, (16, 512, 512, "unknown")),  # what it dirtied has content
    (GUEST, None, 100.0, 16, (134, 134, 512, "guest-stats")),  # RAM - free
    (GUEST, None, 98.0 + 601, 0, (0, 512, 512, "unknown")),  # statistics too old
    (None, SEEN, 100.0, 0, (139, 139, 512, "previous-migration")),
    (GUEST, SEEN, 100.0, 0, (139, 139, 512, "previous-migration")),  # the larger bound
])
def test_content_before_a_migration(guest: GuestMemoryStats | None,
                                    previous: firstpass.ContentSeen | None, now: float,
                                    dirtied: int, expected: tuple[int, int, int, str]) -> None:
    c = firstpass.content_before(RAM, guest, previous, now, dirtied * MIB)
    assert (c.bytes.low / MIB, c.bytes.central / MIB, c.bytes.high / MIB, c.source) == expected
    assert c.basis


HOST = GuestResidency(resident_bytes=154 * MIB, mapped_bytes=RAM, at_s=99.0)


@pytest.mark.parametrize(("guest", "previous", "resident", "now", "expected"), [
    # only the host's backing: the upper bound is the central figure and the high end
    (None, None, HOST, 100.0, (16, 154, 154, "host-memory")),
    # a lower bound known: it stays the central figure, the backing caps the high end
    (GUEST, None, HOST, 100.0, (134, 134, 154, "guest-stats")),
    (GUEST, SEEN, HOST, 100.0, (139, 139, 154, "previous-migration")),
    # a stale reading is no reading
    (None, None, HOST, 99.0 + 601, (16, 512, 512, "unknown")),
    # a backing read below a lower bound (the guest grew since): never a range upside down
    (GUEST, None, GuestResidency(100 * MIB, RAM, 99.0), 100.0, (134, 134, 134, "guest-stats")),
    # backing less than the guest dirtied in a window: the dirtied pages have content
    (None, None, GuestResidency(8 * MIB, RAM, 99.0), 100.0, (16, 16, 16, "host-memory")),
])
def test_content_before_with_what_the_host_backs(
        guest: GuestMemoryStats | None, previous: firstpass.ContentSeen | None,
        resident: GuestResidency, now: float, expected: tuple[int, int, int, str]) -> None:
    c = firstpass.content_before(RAM, guest, previous, now, 16 * MIB, resident=resident)
    assert (c.bytes.low / MIB, c.bytes.central / MIB, c.bytes.high / MIB, c.source) == expected
    assert ("host backs" in c.basis) == (now - resident.at_s <= 600)


def test_content_left_with_what_the_host_backs() -> None:
    """The backing is an estimate like the others: what is left of it after what was
    sent, and never more than what is left to scan."""
    pages = MIB // PAGE
    s = snap(remaining_bytes=412 * MIB, normal_pages=40 * pages, zero_pages=60 * pages)
    prior = firstpass.content_before(RAM, None, None, 100.0, resident=HOST)
    assert firstpass.content_left(s, prior) == Span(0, 114 * MIB, 412 * MIB)


def snap(**over: int | float | str | None) -> MigrationSnapshot:
    base: dict[str, object] = dict(status="active", page_size=PAGE, total_bytes=RAM)
    base.update(over)
    return MigrationSnapshot(**base)  # type: ignore[arg-type]


def test_content_left_in_the_bulk_pass() -> None:
    pages = MIB // PAGE
    # 100 MiB processed (40 with content), 412 MiB left to scan
    s = snap(remaining_bytes=412 * MIB, normal_pages=40 * pages, zero_pages=60 * pages)
    prior = firstpass.content_before(RAM, GUEST, None, 100.0)  # 134 MiB of content
    assert firstpass.content_left(s, prior) == Span(94 * MIB, 94 * MIB, 412 * MIB)
    # no prior: the share seen so far, 40 %, of what is left; from 0 to all of it
    assert firstpass.content_left(s, None) == pytest.approx(Span(0, 0.4 * 412 * MIB, 412 * MIB))
    # more than the prior was sent: none expected, all of what is left possible
    more = snap(remaining_bytes=300 * MIB, normal_pages=150 * pages, zero_pages=62 * pages)
    assert firstpass.content_left(more, prior) == Span(0, 0, 300 * MIB)


def test_the_bulk_pass_is_remembered_from_the_second_sync() -> None:
    f = Forecaster(ForecastConfig())
    f.begin()
    f.sample(10.0, snap(status="setup"))
    f.sample(10.5, snap(dirty_sync_count=1, normal_pages=10, zero_pages=10))
    assert f.previous_content is None
    f.sample(14.0, snap(dirty_sync_count=2, normal_pages=35_000, zero_pages=94_000))
    assert f.previous_content == firstpass.ContentSeen(35_000 * PAGE, 129_000 * PAGE, 14.0)


def test_the_pass_under_way_began_at_its_sync() -> None:
    """Its elapsed time runs to the last figures that moved: a poll that finds QEMU's
    reply unchanged changes no forecast (and so publishes no ``migration``)."""
    f = Forecaster(ForecastConfig())
    f.params = MigrationParams(downtime_limit_ms=300, max_bandwidth_bytes_per_s=32 * MIB)
    f.begin()
    f.sample(10.0, snap(status="setup"))
    f.sample(10.5, snap(dirty_sync_count=1, remaining_bytes=400 * MIB))
    at_12 = snap(dirty_sync_count=1, remaining_bytes=350 * MIB)
    f.sample(12.0, at_12)
    m = Migration("m", "source", 10.0, "active", (), passes=1, snapshot=at_12)
    first = f.during(m, 12.0, INFO, has_vfio=False)
    assert first.inputs.pass_elapsed_s == 2.0  # the bulk pass began at setup
    f.sample(12.5, at_12)  # the same figures again
    assert f.during(m, 12.5, INFO, has_vfio=False).outlook == first.outlook
    at_15 = snap(dirty_sync_count=2, remaining_bytes=40 * MIB)
    f.sample(15.0, at_15)
    f.sample(15.5, snap(dirty_sync_count=2, remaining_bytes=30 * MIB))
    m2 = Migration("m", "source", 10.0, "active", (), passes=2, snapshot=at_15)
    assert f.during(m2, 15.5, INFO, has_vfio=False).inputs.pass_elapsed_s == 0.5


# --- the forecaster before a migration: the example --------------------------------------

INFO = VmInfo(VmBasics((10, 0, 2), "pc", RAM), uuid=None, accel="tcg", vcpus=1,
              run_state="running", migration_events=True)


def lab_forecaster(max_bandwidth: int = 32 * MIB) -> Forecaster:
    """The lab's 512 MiB guest dirtying 8 MiB/s, measured +- 37 %, under a 32 MiB/s cap."""
    f = Forecaster(ForecastConfig())
    f.params = MigrationParams(downtime_limit_ms=300, max_bandwidth_bytes_per_s=max_bandwidth)
    f.measured(DirtyRateMeasurement(8 * MIB, "page-sampling", 1.0, 4096, 90.0), 95.0, 0.37)
    return f


def test_nothing_known_of_the_memory_gives_a_range_around_the_actual_time() -> None:
    # all of RAM: 512 MiB at 32 MiB/s = 16 s, then (8 x 16 - 9.6) / 24 s + 0.3 s = 21.2 s.
    # The low end: the 8 x 0.63 = 5 MiB dirtied in the 1 s window have content, the rest
    # are zero pages: (5 MiB x 4104/4096 + 507 MiB / 4096 x 9) / 32 MiB/s = 0.19 s, which
    # leaves 5 x 0.19 MiB, under the budget. QEMU took 5.2-5.6 s for it in the lab.
    o = lab_forecaster().before(100.0, INFO, has_vfio=False).outlook
    assert o.verdict == "converges"
    assert o.central.eta_s == pytest.approx(21.2, abs=0.2)
    low, high = o.eta_s_low, o.eta_s_high
    assert low is not None and high is not None
    assert low == pytest.approx(0.19, abs=0.01) and high > 21.2
    assert low < 5.2 < high


def test_guest_statistics_bring_the_central_figure_near_the_actual_time() -> None:
    # 512 - 378 = 134 MiB of content: 4.2 s, then (8 x 4.2 - 9.6) / 24 s + 0.3 s = 5.5 s
    f = lab_forecaster()
    f.guest_memory = GUEST
    view = f.before(100.0, INFO, has_vfio=False)
    assert view.content is not None and view.content.source == "guest-stats"
    assert view.outlook.central.eta_s == pytest.approx(5.5, abs=0.1)
    assert view.outlook.eta_s_low is not None and view.outlook.eta_s_low < 5.3


def test_qemus_default_max_bandwidth_is_named_and_noted() -> None:
    view = lab_forecaster(max_bandwidth=MAX_BANDWIDTH_DEFAULT).before(100.0, INFO, False)
    assert view.bandwidth_source == "qemu-default" and QEMU_DEFAULT_NOTE in view.notes
    assert lab_forecaster().before(100.0, INFO, False).bandwidth_source == "max-bandwidth"


def test_a_measurement_without_a_bound_is_taken_as_exact_and_says_so() -> None:
    f = lab_forecaster()
    f.measured(DirtyRateMeasurement(8 * MIB, "page-sampling", 1.0, 4096, 90.0), 95.0, None)
    view = f.before(100.0, INFO, has_vfio=False)
    assert view.outlook.dirty is None
    assert any("no error bound" in n for n in view.notes)


# --- claims, policy, payloads -------------------------------------------------------------------

RUNNING = role_of("running", None)


def test_an_uncertain_claim_publishes_null_and_the_range() -> None:
    c = claim(RUNNING, None, UNCERTAIN, ())
    assert (c.verdict, c.converges) == ("uncertain", None)
    assert c.forecast.converges is True  # the central run alone would have said yes
    data = json.loads(fc.forecast(STAMP, inputs(dirty_bytes_per_s=85 * MIB), c,
                                  bandwidth_source="max-bandwidth", dirty=None).payload)
    schema.ForecastPayload.model_validate(data)
    assert (data["verdict"], data["converges"], data["eta_s_high"]) == ("uncertain", None, None)
    assert data["eta_s"] == pytest.approx(970 / 15 + 0.3)
    assert data["eta_s_low"] == pytest.approx(970 / 27.75)
    assert (data["dirty_bytes_per_s_low"], data["dirty_bytes_per_s_high"]) == pytest.approx(
        (72.25 * MIB, 97.75 * MIB))
    assert data["bandwidth_bytes_per_s_low"] == data["bandwidth_bytes_per_s_high"] == 100 * MIB


def test_advice_for_the_worst_end_but_no_policy_while_uncertain() -> None:
    # 30 MiB/s +- 15 % against the 32 MiB/s cap: 34.5 MiB/s at the high end never converges
    f = lab_forecaster()
    f.measured(DirtyRateMeasurement(30 * MIB, "page-sampling", 1.0, 4096, 90.0), 95.0, 0.15)
    view = f.before(100.0, INFO, has_vfio=False)
    assert view.outlook.verdict == "uncertain"
    assert any(a.action == "downtime-limit" for a in view.advice)
    assert downtime_to_apply(view.outlook.converges, view.advice, allowed=True,
                             applied=()) is None


def test_a_range_that_moves_is_material() -> None:
    wide = claim(RUNNING, None, UNCERTAIN, ())
    narrower = claim(RUNNING, None, outlook(inputs(dirty_bytes_per_s=85 * MIB),
                                            dirty=Span.relative(85 * MIB, 0.1)), ())
    assert narrower.verdict == "uncertain"
    # the low end moved from 970 / 27.75 = 35.0 s to 970 / 23.5 = 41.3 s: by 18 %
    assert material_change(wide, narrower)
    assert not material_change(wide, claim(RUNNING, None, UNCERTAIN, ()))


def test_the_summary_inside_migration_has_the_range() -> None:
    s = fc.summary(UNCERTAIN, passes_done=1)
    assert (s.verdict, s.converges, s.eta_s_high) == ("uncertain", None, None)
    assert s.eta_s == pytest.approx(970 / 15 + 0.3)
    one = fc.summary(Outlook.single(forecast(inputs())), passes_done=0)
    assert one.verdict == "converges" and one.eta_s_low == one.eta_s == one.eta_s_high


def test_admit_shows_the_range_and_a_guessed_bandwidth() -> None:
    c = claim(RUNNING, None, UNCERTAIN, ())
    payload = schema.ForecastPayload.model_validate_json(fc.forecast(
        STAMP, inputs(dirty_bytes_per_s=85 * MIB), c, bandwidth_source="qemu-default",
        dirty=None).payload)
    line = forecast_line(payload)
    assert line.startswith("forecast: uncertain")
    assert "(QEMU's default max-bandwidth, not measured)" in line
    assert "ETA 65 s (35 s to never)" in line
