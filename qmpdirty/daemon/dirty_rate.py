"""Periodic ``calc-dirty-rate`` outside migrations (shell, one task).

Only while the VM's role calls for it (``decisions.role.measures_dirty_rate``: the
guest runs and no migration does; the task waits on ``VmView.measurable``), when
``decisions.migration.dirtyrate`` says a measurement is due, starts one, waits its
window, reads it with ``query-dirty-rate`` and publishes ``dirty_rate`` (with its error
bound) unless QEMU reported the previous result again or the role moved meanwhile
(``decisions.migration.republish.measured_rate_action``); the forecaster takes it and
the view signals the forecast task (``claims_changed``), which republishes ``forecast``
if its claim moved. Must not choose modes or intervals itself, decide whether a result
is new, nor publish the forecast.
"""

from __future__ import annotations

import asyncio
import logging
import random

from qmpdirty.daemon import dirty_windows
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.dirtyrate import (
    DirtyRatePlan,
    choose_mode,
    plan_measurement,
    seconds_until_due,
)
from qmpdirty.decisions.migration.republish import (
    MeasurementSeen,
    measured_rate_action,
    measurement_seen,
)
from qmpdirty.errors import QmpCommandError, QmpTimeoutError
from qmpdirty.qmp import queries
from qmpdirty.telemetry import render

log = logging.getLogger(__name__)

async def measure_dirty_rate(view: VmView) -> None:
    """The task: measure whenever due, until cancelled."""
    dcfg = view.cfg.dirty_rate
    schedule = plan_measurement(dcfg, dcfg.mode, None)  # only its interval is used
    last_start: float | None = None
    last_seen: MeasurementSeen | None = None
    spread = random.uniform(0.5, 1.5)  # the first repeat spreads VMs over the interval
    while True:
        if not view.measurable.is_set():
            await view.measurable.wait()
            continue
        delay = seconds_until_due(schedule, view.clock(), last_start,
                                  mig.is_active(view.vm.tracker), measuring=False,
                                  spread=spread)
        if delay is None:  # a migration the role has not caught up with yet
            await asyncio.sleep(0.1)
            continue
        if delay > 0:
            await asyncio.sleep(delay)
            continue
        if last_start is not None:  # the first repeat keeps its wide spread
            spread = random.uniform(0.9, 1.1)
        last_start = view.clock()
        mode, why = choose_mode(dcfg.mode, view.version, view.has_vfio)
        if why:
            log.info("VM %s: dirty rate by %s: %s", view.name, mode, why)
        plan = plan_measurement(dcfg, mode, view.info.basics.ram_bytes if view.info else None)
        try:
            last_seen = await _measure(view, plan, last_seen)
        except QmpTimeoutError:
            log.debug("VM %s: dirty-rate measurement timed out", view.name)


async def _measure(view: VmView, plan: DirtyRatePlan, last_seen: MeasurementSeen | None
                   ) -> MeasurementSeen | None:
    """One ``calc-dirty-rate``; publish it unless it is the previous result again."""
    try:
        await queries.start_dirty_rate(view.session, plan, view.version)
    except QmpCommandError as exc:
        # "the dirty rate is already being measured": someone else is; try later.
        log.info("VM %s: calc-dirty-rate: %s", view.name, exc.desc)
        return last_seen
    await asyncio.sleep(plan.window_s)
    deadline = view.clock() + plan.window_s + view.cfg.qmp.command_timeout_s
    while view.clock() < deadline:
        found = await queries.read_dirty_rate(view.session, view.version)
        action = "poll" if found is None else measured_rate_action(found, view.role, last_seen)
        if found is not None and action == "withhold":
            log.info("VM %s: dirty rate not published: %s", view.name, view.role.reason)
            return measurement_seen(found)
        if found is not None and action == "publish":
            figure, bound, basis, found = await dirty_windows.complete(view, plan, found)
            view.out.publish(render.dirty_rate_measured(
                view.out.stamp(), figure, view.dirty_rate_expiry(), error_bound_rel=bound,
                basis=basis))
            view.vm.dirty_rate_retained = True
            view.measured(figure, bound)
            return measurement_seen(found)
        await asyncio.sleep(0.1)
    log.warning("VM %s: dirty-rate measurement did not finish in time", view.name)
    return last_seen
