"""The retained pre-migration ``forecast`` of one VM (shell, one task).

Published when its claim changes materially - after a dirty-rate measurement, when
the VM's role or blockers change (``VmView.claims_changed``) - and otherwise as a
heartbeat every ``[forecast] publish_interval_s`` (jittered) after the last publish,
with QEMU's migration parameters read again first. The model is ``decisions``'
(``forecaster``), and so is what may be claimed (``migration.claim``: only a running
guest has a forecast; a blocked VM's verdict is ``blocked``). Fires
``forecast-negative`` when ``converges`` turns false. Must not compute anything here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Literal

from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration.claim import ForecastClaim, claim, material_change
from qmpdirty.decisions.migration.hooks_due import forecast_turned_negative
from qmpdirty.errors import QmpQueryError
from qmpdirty.qmp import queries
from qmpdirty.telemetry.render import forecast as fc

log = logging.getLogger(__name__)

#: What ends the forecast task's wait (``Forecasts._next``).
Wake = Literal["claims", "published", "due"]


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
        self._last: ForecastClaim | None = None
        self._last_converges: bool | None = None
        self._published = asyncio.Event()  # restarts the heartbeat's wait

    async def run(self) -> None:
        """Until cancelled: a changed claim at once (when material), the heartbeat
        0.9-1.1 intervals after the last publish (the first 0.5-1.5 intervals after the
        start: VMs started together spread)."""
        interval = self._view.cfg.forecast.publish_interval_s
        loop = asyncio.get_running_loop()
        due = loop.time() + interval * random.uniform(0.5, 1.5)
        self._published.clear()  # the session's first forecast keeps the wide spread
        while True:
            match await self._next(max(0.0, due - loop.time())):
                case "claims":
                    self.publish(only_if_moved=True)
                case "due":
                    await refresh_params(self._view)
                    self.publish()
            if self._published.is_set():
                self._published.clear()
                due = loop.time() + interval * random.uniform(0.9, 1.1)

    async def _next(self, wait_s: float) -> Wake:
        """What ends the wait: the role or blockers changed (``claims``), something
        published the forecast (``published``: the heartbeat starts again), or ``due``."""
        claims, published = self._view.claims_changed, self._published
        waits = {asyncio.ensure_future(claims.wait()), asyncio.ensure_future(published.wait())}
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if claims.is_set():
            claims.clear()
            return "claims"
        return "published" if published.is_set() else "due"

    def publish(self, *, only_if_moved: bool = False) -> None:
        """The retained ``forecast``; ``only_if_moved``: skip it unless its claim changed
        materially (``material_change``)."""
        v = self._view
        if v.blockers_pending:
            return  # held until the first VFIO evaluation: never "converges" on a blocked VM
        view = v.forecaster.before(v.clock(), v.info, v.has_vfio)
        claimed = claim(v.role, v.blockers, view.forecast, view.advice)
        if only_if_moved and not material_change(self._last, claimed):
            return
        self._last = claimed
        msg = fc.forecast(v.out.stamp(), view.inputs, claimed,
                          bandwidth_source=view.bandwidth_source, dirty=view.dirty)
        v.out.publish(msg)
        self._published.set()
        converges = claimed.forecast.converges
        if forecast_turned_negative(self._last_converges, converges):
            v.out.fire("forecast-negative", msg)
        self._last_converges = converges
