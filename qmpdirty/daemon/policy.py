"""What the daemon changes in a migrating VM by itself, when allowed (shell).

With ``[policy] apply_recommendations`` and not under libvirt, a migration whose
forecast says it will not converge gets its ``downtime-limit`` raised once
(``decisions.migration.policy`` decides); ``migration``'s recommendations show it as
``applied``. Off by default. Must not send anything but ``migrate-set-parameters``.
"""

from __future__ import annotations

import logging

from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration.forecast import AdviceAction
from qmpdirty.decisions.migration.forecaster import ForecastView
from qmpdirty.decisions.migration.policy import downtime_to_apply
from qmpdirty.errors import QmpQueryError

log = logging.getLogger(__name__)


class PolicyActions:
    """The recommendations applied during one VM's current migration."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self.applied: set[AdviceAction] = set()
        self._pending_downtime_ms: int | None = None

    def migration_began(self) -> None:
        self.applied = set()

    def consider(self, forecast: ForecastView) -> None:
        """Queue what the forecast calls for (sent by ``apply``: ``observe`` cannot wait)."""
        policy = self._view.cfg.policy
        ms = downtime_to_apply(forecast.outlook.converges, forecast.advice,
                               applied=self.applied,
                               allowed=policy.apply_recommendations and not policy.under_libvirt)
        if ms is not None:
            self.applied.add("downtime-limit")
            self._pending_downtime_ms = ms

    async def apply(self) -> None:
        """Send what ``consider`` queued: raise downtime-limit (logged; on failure it
        no longer shows as applied)."""
        ms, self._pending_downtime_ms = self._pending_downtime_ms, None
        if ms is None:
            return
        name = self._view.name
        try:
            await self._view.session.execute("migrate-set-parameters", {"downtime-limit": ms})
            log.warning("VM %s: policy applied downtime-limit=%d ms (forecast: no convergence)",
                        name, ms)
        except QmpQueryError as exc:
            log.warning("VM %s: could not apply downtime-limit=%d: %s", name, ms, exc)
            self.applied.discard("downtime-limit")
