"""The retained pre-migration ``forecast`` of one VM (shell, one task).

Published at the start of a session, every ``[forecast] publish_interval_s``
(jittered, with QEMU's migration parameters read again first) and after a dirty-rate
measurement that moves it materially; never while a migration runs (``migration``
carries its own). Fires ``forecast-negative`` when the verdict turns to "does not
converge". The model is ``decisions``'; must not compute anything here.
"""

from __future__ import annotations

import asyncio
import logging
import random

from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.forecast import Published, material_change
from qmpdirty.decisions.migration.hooks_due import forecast_turned_negative
from qmpdirty.errors import QmpQueryError
from qmpdirty.qmp import queries
from qmpdirty.telemetry.render import forecast as fc

log = logging.getLogger(__name__)


async def refresh_params(view: VmView) -> None:
    """``query-migrate-parameters`` into the forecaster (kept as they were on failure)."""
    try:
        view.forecaster.params = await queries.migration_params(view.session)
    except QmpQueryError as exc:
        log.warning("VM %s: query-migrate-parameters: %s", view.name, exc)


class Forecasts:
    """The ``forecast`` topic of one VM's session."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self._last: Published | None = None
        self._last_converges: bool | None = None

    async def run(self) -> None:
        """The periodic refresh; the first comes after 0.5-1.5 intervals (VMs started
        together spread)."""
        interval = self._view.cfg.forecast.publish_interval_s
        await asyncio.sleep(interval * random.uniform(0.5, 1.5))
        while True:
            await refresh_params(self._view)
            self.publish()
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    def publish(self, *, only_if_moved: bool = False) -> None:
        """The retained ``forecast`` (not while a migration runs); ``only_if_moved``:
        skip it unless it changed materially (``material_change``)."""
        v = self._view
        if mig.is_active(v.vm.tracker):
            return
        view = v.forecaster.before(v.clock(), v.info, v.has_vfio)
        published = (view.forecast, view.advice)
        if only_if_moved and not material_change(self._last, published):
            return
        self._last = published
        msg = fc.forecast(v.out.stamp(), view.inputs, view.forecast, view.advice,
                          bandwidth_source=view.bandwidth_source, dirty=view.dirty)
        v.out.publish(msg)
        converges = view.forecast.converges
        if forecast_turned_negative(self._last_converges, converges):
            v.out.fire("forecast-negative", msg)
        self._last_converges = converges
