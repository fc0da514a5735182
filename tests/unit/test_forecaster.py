"""The forecaster's bandwidth chain, policy and hook triggers: decisions, no I/O."""

from __future__ import annotations

import pytest

from qmpdirty.config.sections import ForecastConfig
from qmpdirty.decisions.migration.forecast import Advice, AdviceAction, Forecast
from qmpdirty.decisions.migration.forecaster import Forecaster, first_known
from qmpdirty.decisions.migration.hooks_due import forecast_turned_negative
from qmpdirty.decisions.migration.policy import downtime_to_apply
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.decisions.migration.uncertainty import Span
from qmpdirty.facts.vm import MigrationParams, MigrationSnapshot, VmBasics, VmInfo

INFO = VmInfo(VmBasics((10, 0, 2), "pc", 2**30), uuid=None, accel="tcg", vcpus=2,
              run_state="running", migration_events=True)
MAX = MigrationParams(downtime_limit_ms=300, max_bandwidth_bytes_per_s=16 * 2**20)


def forecaster(configured: float | None = None, params: MigrationParams | None = MAX,
               last: float | None = None) -> Forecaster:
    f = Forecaster(ForecastConfig(bandwidth_bytes_per_s=configured))
    f.params = params
    f.last_bandwidth = Span.point(last) if last else None
    return f


@pytest.mark.parametrize(("f", "bandwidth", "source"), [
    (forecaster(configured=1e9, last=2e9), 1e9, "configured"),
    (forecaster(last=2e9), 2e9, "measured"),
    (forecaster(), 16 * 2**20, "max-bandwidth"),
    (forecaster(params=MigrationParams(300, 0)), None, "unknown"),
    (forecaster(params=None), None, "unknown"),
])
def test_bandwidth_before_a_migration(f: Forecaster, bandwidth: float | None,
                                      source: str) -> None:
    view = f.before(100.0, INFO, has_vfio=False)
    assert (view.inputs.bandwidth_bytes_per_s, view.bandwidth_source) == (bandwidth, source)


def test_bandwidth_during_a_migration_is_its_own_else_max_bandwidth() -> None:
    f = forecaster(configured=1e9, last=2e9)  # neither counts once a migration runs
    m = Migration(id="m", role="source", started_ts=0.0, status="active",
                  statuses=("active",), snapshot=MigrationSnapshot(status="active"))
    view = f.during(m, 1.0, INFO, has_vfio=False)
    assert (view.inputs.bandwidth_bytes_per_s, view.bandwidth_source) == \
        (16 * 2**20, "max-bandwidth")
    f.sample(1.0, MigrationSnapshot(status="active", bandwidth_bytes_per_s=5e6))
    view = f.during(m, 2.0, INFO, has_vfio=False)
    assert (view.inputs.bandwidth_bytes_per_s, view.bandwidth_source) == (5e6, "measured")


def test_first_known_skips_unknown_and_zero() -> None:
    assert first_known((None, "configured"), (0.0, "measured"), (3.0, "max-bandwidth")) == \
        (3.0, "max-bandwidth")
    assert first_known() == (None, "unknown")


@pytest.mark.parametrize(("previous", "current", "fires"), [
    (None, False, True), (True, False, True), (False, False, False),
    (False, True, False), (None, None, False), (True, None, False),
])
def test_forecast_turned_negative(previous: bool | None, current: bool | None,
                                  fires: bool) -> None:
    assert forecast_turned_negative(previous, current) is fires


NO = Forecast(False, None, 900.0, None)
RAISE = (Advice("auto-converge", None, "r", True), Advice("downtime-limit", 901.0, "r", True))


@pytest.mark.parametrize(("forecast", "allowed", "applied", "ms"), [
    (NO, True, (), 901),
    (NO, False, (), None),  # policy off, or under libvirt
    (NO, True, ("downtime-limit",), None),  # once per migration
    (Forecast(True, 10.0, 100.0, 2), True, (), None),
    (Forecast(None, None, None, None), True, (), None),
])
def test_downtime_to_apply(forecast: Forecast, allowed: bool,
                           applied: tuple[AdviceAction, ...],
                           ms: int | None) -> None:
    converges = forecast.converges
    assert downtime_to_apply(converges, RAISE, allowed=allowed, applied=applied) == ms
    assert downtime_to_apply(converges, RAISE[:1], allowed=True, applied=()) is None
