"""When ``migration``, ``dirty_rate`` (in-migration and measured) and ``info`` go out
again, and when ``migration-status`` fires: on a change of the values they are rendered
from."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.migration.forecast import Advice, Forecast, ForecastInputs
from qmpdirty.decisions.migration.forecaster import ForecastView
from qmpdirty.decisions.migration.republish import (
    InfoShown,
    MeasuredAction,
    MeasurementSeen,
    MigrationRepublish,
    RateShown,
    measured_rate_action,
    migration_shown,
    rate_to_publish,
    republish_info,
    republish_migration,
)
from qmpdirty.decisions.migration.uncertainty import Outlook
from qmpdirty.decisions.role import RoleVerdict, role_of
from qmpdirty.facts.vm import DirtyRateMeasurement, MigrationSnapshot, VmBasics, VmInfo
from qmpdirty.telemetry.render import forecast as fc

SNAP = MigrationSnapshot(status="active", remaining_bytes=2**30,
                         bandwidth_bytes_per_s=100 * 2**20)
M = mig.Migration(id="m1", role="source", started_ts=1.0, status="active",
                  statuses=("setup", "active"), passes=1, precopy_passes=1, snapshot=SNAP)
INPUTS = ForecastInputs(bandwidth_bytes_per_s=100 * 2**20, dirty_bytes_per_s=10 * 2**20,
                        remaining_bytes=2**30, downtime_limit_ms=300)
ADVICE = Advice("downtime-limit", 900.0, "with this downtime limit the last pass fits", True)


def view(eta_s: float | None = 12.0, advice: tuple[Advice, ...] = (),
         dirty: DirtyEstimate | None = None, worst_eta_s: float | None = 20.0) -> ForecastView:
    central = Forecast(converges=True, eta_s=eta_s, downtime_ms=250.0, passes=3)
    worst = replace(central, eta_s=worst_eta_s)
    return ForecastView(INPUTS, Outlook(central, central, worst), advice, "measured", dirty)


# --- migration -------------------------------------------------------------------------

SOURCE = view()
CASES: list[tuple[str, mig.Migration, ForecastView | None, frozenset[str], MigrationRepublish]] = [
    ("nothing changed", M, SOURCE, frozenset(), MigrationRepublish(publish=False)),
    ("a terminal poll counted", replace(M, terminal_polls=2), SOURCE, frozenset(),
     MigrationRepublish(publish=False)),
    ("new figures", replace(M, snapshot=replace(SNAP, remaining_bytes=2**29)), SOURCE,
     frozenset(), MigrationRepublish(publish=True)),
    ("a pass ended", replace(M, passes=2, precopy_passes=2), SOURCE, frozenset(),
     MigrationRepublish(publish=True)),
    ("another status", replace(M, status="device", statuses=(*M.statuses, "device")),
     SOURCE, frozenset(), MigrationRepublish(publish=True, status_hook=True)),
    ("the ETA moved", M, view(eta_s=13.0), frozenset(), MigrationRepublish(publish=True)),
    ("the range's end moved", M, view(worst_eta_s=30.0), frozenset(),
     MigrationRepublish(publish=True)),
    ("advice appeared", M, view(advice=(ADVICE,)), frozenset(),
     MigrationRepublish(publish=True)),
    ("only the rate moved (not in migration)", M,
     view(dirty=DirtyEstimate(1.0, "migration", "migration-bitmap", "QEMU")), frozenset(),
     MigrationRepublish(publish=False)),
    ("no forecast any more", M, None, frozenset(), MigrationRepublish(publish=True)),
]


@pytest.mark.parametrize(("case", "m", "v", "applied", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_migration_is_republished_when_what_it_shows_changed(
        case: str, m: mig.Migration, v: ForecastView | None, applied: frozenset[str],
        expected: MigrationRepublish) -> None:
    before = migration_shown(M, SOURCE)
    assert republish_migration(before, migration_shown(m, v, applied)) == expected


def test_advice_applied_meanwhile_is_news() -> None:
    v = view(advice=(ADVICE,))
    before = migration_shown(M, v)
    assert republish_migration(before, migration_shown(M, v, {"downtime-limit"})).publish
    assert not republish_migration(before, migration_shown(M, v, {"dirty-limit"})).publish


def test_the_sessions_first_migration_is_published_with_its_hook() -> None:
    assert republish_migration(None, migration_shown(M, None)) == MigrationRepublish(
        publish=True, status_hook=True)


@pytest.mark.parametrize(("m", "v", "applied"), [(c[1], c[2], c[3]) for c in CASES] + [
    (M, view(advice=(ADVICE,)), frozenset({"downtime-limit"})),
    (replace(M, role="destination"), None, frozenset())])
def test_the_decision_agrees_with_the_payloads_it_is_rendered_into(
        m: mig.Migration, v: ForecastView | None, applied: frozenset[str]) -> None:
    """The payload's parts, rendered, differ exactly when the values do."""
    def rendered(m: mig.Migration, v: ForecastView | None, applied: frozenset[str]) -> object:
        return (replace(m, terminal_polls=0),
                fc.summary(v.outlook, mig.passes_done(m)) if v else None,
                fc.recommendations(v.advice, applied) if v else [])

    decision = republish_migration(migration_shown(M, SOURCE), migration_shown(m, v, applied))
    assert decision.publish == (rendered(m, v, applied) != rendered(M, SOURCE, frozenset()))


# --- the in-migration dirty rate -------------------------------------------------------

RUNNING = role_of("running", None)
OUT = role_of("running", "source")
PAUSED = role_of("paused", "source")
QEMUS = DirtyEstimate(50.0, "migration", "migration-bitmap", "QEMU's dirty-pages-rate")
ESTIMATE = DirtyEstimate(40.0, "estimate", "page-sampling", "from the last measurement")
MEASURED = DirtyEstimate(40.0, "calc-dirty-rate", "page-sampling", "measured")


@pytest.mark.parametrize(("d", "role", "before", "expected"), [
    (None, OUT, None, None),
    (QEMUS, OUT, None, RateShown(50.0, "migration", "migration-bitmap")),
    (QEMUS, OUT, RateShown(50.0, "migration", "migration-bitmap"), None),
    (replace(QEMUS, basis="another wording", error_bound_rel=0.1), OUT,
     RateShown(50.0, "migration", "migration-bitmap"), None),
    (replace(QEMUS, bytes_per_s=51.0), OUT, RateShown(50.0, "migration", "migration-bitmap"),
     RateShown(51.0, "migration", "migration-bitmap")),
    (ESTIMATE, OUT, RateShown(50.0, "migration", "migration-bitmap"),
     RateShown(40.0, "estimate", "page-sampling")),
    (MEASURED, OUT, None, None),  # the dirty-rate task publishes measurements
    (QEMUS, PAUSED, None, None),  # a paused guest dirties nothing: no rate retained
    (QEMUS, role_of("inmigrate", "destination"), None, None),
])
def test_the_in_migration_rate_goes_out_while_the_guest_runs_and_when_it_moved(
        d: DirtyEstimate | None, role: RoleVerdict, before: RateShown | None,
        expected: RateShown | None) -> None:
    assert rate_to_publish(d, role, before) == expected


# --- the measured dirty rate ----------------------------------------------------------

FOUND = DirtyRateMeasurement(bytes_per_s=40.0, mode="page-sampling", window_s=1.0,
                             sample_pages=512, started_at_s=100.0)


@pytest.mark.parametrize(("found", "role", "before", "expected"), [
    (FOUND, RUNNING, None, "publish"),  # the session's first
    (FOUND, RUNNING, MeasurementSeen(100.0, 40.0), "poll"),  # QEMU's previous result again
    (FOUND, RUNNING, MeasurementSeen(90.0, 40.0), "publish"),  # a new one, same figure
    (FOUND, RUNNING, MeasurementSeen(100.0, 41.0), "publish"),
    (replace(FOUND, started_at_s=None), RUNNING, MeasurementSeen(None, 40.0), "poll"),
    (replace(FOUND, window_s=2.0, sample_pages=1024), RUNNING, MeasurementSeen(100.0, 40.0),
     "poll"),  # only start and rate identify a result
    (FOUND, OUT, None, "withhold"),  # a migration began meanwhile
    (FOUND, OUT, MeasurementSeen(100.0, 40.0), "withhold"),
    (FOUND, PAUSED, None, "withhold"),
    (FOUND, role_of("paused", None), None, "withhold"),
])
def test_a_measurement_goes_out_while_the_role_measures_and_when_it_is_new(
        found: DirtyRateMeasurement, role: RoleVerdict, before: MeasurementSeen | None,
        expected: MeasuredAction) -> None:
    assert measured_rate_action(found, role, before) == expected


# --- info ------------------------------------------------------------------------------

INFO = VmInfo(VmBasics((10, 0, 2), "pc", 2**30), uuid=None, accel="tcg", vcpus=2,
              run_state="running", migration_events=True)
SHOWN = InfoShown(INFO, RUNNING)


@pytest.mark.parametrize(("before", "now", "always", "expected"), [
    (None, SHOWN, False, True),
    (SHOWN, InfoShown(INFO, RUNNING), False, False),
    (SHOWN, InfoShown(INFO, RUNNING), True, True),  # a new session publishes its own
    (SHOWN, InfoShown(replace(INFO, run_state="paused"), RUNNING), False, True),
    (SHOWN, InfoShown(INFO, OUT), False, True),
    (SHOWN, InfoShown(replace(INFO, vcpus=4), RUNNING), False, True),
])
def test_info_is_republished_when_its_facts_or_the_role_changed(
        before: InfoShown | None, now: InfoShown, always: bool, expected: bool) -> None:
    assert republish_info(before, now, always=always) is expected


# --- what the tracker asks of the shell ------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    ("setup", True), ("active", False), ("device", False), ("completed", False), (None, False)])
def test_the_parameters_are_read_again_when_a_migration_is_set_up(
        status: str | None, expected: bool) -> None:
    assert mig.rereads_params(status) is expected
