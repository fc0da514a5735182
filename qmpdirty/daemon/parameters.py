"""QEMU's migration parameters, read into the VM's forecaster (shell).

Read when a session starts, at every forecast heartbeat and when a migration is set up
(its parameters may just have been set); the forecast and the migrations tasks share
this one reader rather than each other. Must not interpret the parameters.
"""

from __future__ import annotations

import logging

from qmpdirty.daemon.view import VmView
from qmpdirty.errors import QmpQueryError
from qmpdirty.qmp import queries

log = logging.getLogger(__name__)


async def refresh_params(view: VmView) -> None:
    """``query-migrate-parameters`` into the forecaster (kept as they were on failure)."""
    try:
        view.forecaster.params = await queries.migration_params(view.session)
    except QmpQueryError as exc:
        log.warning("VM %s: query-migrate-parameters: %s", view.name, exc)
