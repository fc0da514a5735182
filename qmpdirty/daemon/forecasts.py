"""The retained pre-migration ``forecast`` of one VM (shell, one task).

Published by this task alone: when its claim changes materially - after a dirty-rate
measurement, when the VM's role or blockers change (``VmView.claims_changed``) - and otherwise as a
heartbeat every ``[forecast] publish_interval_s`` (jittered) after the last publish,
with QEMU's migration parameters, the guest's memory statistics (a virtio-balloon's
``guest-stats``, when the VM has one and the guest reports) and what the host backs of
its RAM (``daemon.residency``, at most every ``RESIDENCY_REFRESH_S``: the first at the
first heartbeat, so that VMs started together do not all read at once) read again first. The model
is ``decisions``' (``forecaster``), and so is what may be claimed (``migration.claim``:
only a running guest has a forecast; a blocked VM's verdict is ``blocked``). Fires
``forecast-negative`` when ``converges`` turns false. Must not compute anything here.
"""

from __future__ import annotations

import asyncio
import logging
import random

from qmpdirty.cancel import wait_set
from qmpdirty.daemon.parameters import refresh_params
from qmpdirty.daemon.residency import refresh_residency
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration.claim import ForecastClaim, claim, material_change
from qmpdirty.decisions.migration.hooks_due import forecast_turned_negative
from qmpdirty.errors import QmpQueryError
from qmpdirty.qmp import queries
from qmpdirty.telemetry.render import forecast as fc

log = logging.getLogger(__name__)

async def find_balloon(view: VmView) -> str | None:
    """The QOM path of the VM's virtio-balloon, None without one (or when asking failed)."""
    try:
        return await queries.balloon_path(view.session)
    except QmpQueryError as exc:
        log.info("VM %s: looking for a balloon: %s", view.name, exc)
        return None


async def refresh_guest_memory(view: VmView, balloon: str | None) -> None:
    """The balloon's ``guest-stats`` into the forecaster (kept as they were on failure;
    None while the guest reports nothing)."""
    if balloon is None:
        return
    try:
        view.forecaster.guest_memory = await queries.guest_memory(view.session, balloon)
    except QmpQueryError as exc:
        log.info("VM %s: guest-stats of %s: %s", view.name, balloon, exc)


#: How often what the host backs of a VM's RAM is read again (``refresh_residency``):
#: it changes slowly, and each reading costs up to a few milliseconds of CPU per VM.
RESIDENCY_REFRESH_S = 300.0


class Forecasts:
    """The ``forecast`` topic of one VM's session: this task alone publishes it."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self._last: ForecastClaim | None = None
        self._last_converges: bool | None = None
        self._balloon: str | None = None  # its QOM path, looked up once per session
        self._residency_read: float | None = None  # loop time of the last reading

    async def run(self) -> None:
        """Until cancelled: a changed claim at once (when material), the heartbeat
        0.9-1.1 intervals after the last publish (the first 0.5-1.5 intervals after the
        start: VMs started together spread)."""
        interval = self._view.cfg.forecast.publish_interval_s
        self._balloon = await find_balloon(self._view)
        await refresh_guest_memory(self._view, self._balloon)
        loop = asyncio.get_running_loop()
        due = loop.time() + interval * random.uniform(0.5, 1.5)
        while True:
            if await self._claims_changed(max(0.0, due - loop.time())):
                if not self.publish(only_if_moved=True):
                    continue
            else:
                await refresh_params(self._view)
                await refresh_guest_memory(self._view, self._balloon)
                if self._residency_read is None or \
                        loop.time() - self._residency_read >= RESIDENCY_REFRESH_S:
                    self._residency_read = loop.time()
                    refresh_residency(self._view)
                self.publish()  # held while blockers are pending: the next beat is due anyway
            due = loop.time() + interval * random.uniform(0.9, 1.1)

    async def _claims_changed(self, wait_s: float) -> bool:
        """Whether the role, blockers or measured rate changed (``claims_changed``)
        before the heartbeat fell due."""
        claims = self._view.claims_changed
        if await wait_set(claims, wait_s):
            claims.clear()
            return True
        return False

    def publish(self, *, only_if_moved: bool = False) -> bool:
        """The retained ``forecast``; ``only_if_moved``: skip it unless its claim changed
        materially (``material_change``). Whether it was published."""
        v = self._view
        if v.blockers_pending:
            return False  # held until the first VFIO evaluation: never "converges" on a blocked VM
        view = v.forecaster.before(v.clock(), v.info, v.has_vfio)
        claimed = claim(v.role, v.blockers, view.outlook, view.advice)
        if only_if_moved and not material_change(self._last, claimed):
            return False
        self._last = claimed
        msg = fc.forecast(v.out.stamp(), view.inputs, claimed,
                          bandwidth_source=view.bandwidth_source, dirty=view.dirty,
                          content=view.content, notes=view.notes)
        v.out.publish(msg)
        converges = claimed.converges
        if forecast_turned_negative(self._last_converges, converges):
            v.out.fire("forecast-negative", msg)
        self._last_converges = converges
        return True
