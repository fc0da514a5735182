"""One VM's ``info`` and the role it carries, followed as they change (shell).

``refresh_info`` reads the facts (``query-status`` and friends) when the run state may
have moved; ``follow_role`` runs after that and after a migration began or ended (the
role depends on both, ``decisions.role``): it publishes ``info`` when its content
changed (``decisions.migration.republish``), clears the retained ``dirty_rate`` once
the guest no longer runs (README § Role: no stale rate stays retained at switchover, on
a paused guest or a destination), and the view wakes the tasks that act on the role
(dirty rate, forecast). Must not decide a role, what follows from it, or whether
``info`` changed.
"""

from __future__ import annotations

import asyncio
import logging

from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration.republish import InfoShown, republish_info
from qmpdirty.decisions.role import reports_dirty_rate, switchover_settling
from qmpdirty.errors import QmpTimeoutError
from qmpdirty.qmp import queries
from qmpdirty.telemetry import render
from qmpdirty.telemetry.schema import InfoPayload
from qmpdirty.telemetry.topics import TopicKind

log = logging.getLogger(__name__)


async def refresh_info(view: VmView, *, always: bool = False) -> InfoPayload | None:
    """Read the ``info`` facts, then ``follow_role``; the ``info`` payload it published,
    if any."""
    view.info = await queries.gather_info(view.session, view.version, view.identity,
                                          view.events_on)
    return follow_role(view, always=always)


async def refresh_info_if_answering(view: VmView) -> None:
    """``refresh_info``, unless QEMU does not answer in time (liveness reports that)."""
    try:
        await refresh_info(view)
    except QmpTimeoutError:
        log.debug("VM %s: info refresh timed out", view.name)


#: After a migration ended: how often, and how far apart, ``info`` is read again while the
#: run state still says ``finish-migrate`` (``decisions.role.switchover_settling``).
SETTLE_READS, SETTLE_S = 20, 0.1


async def refresh_info_after_migration(view: VmView) -> None:
    """``refresh_info_if_answering`` once a migration ended, read again (at most
    ``SETTLE_READS`` times, ``SETTLE_S`` apart) while QEMU's run state has yet to follow:
    the role published must not stay ``migrating-out``."""
    for _ in range(SETTLE_READS):
        await refresh_info_if_answering(view)
        run_state = view.info.run_state if view.info is not None else None
        current = view.vm.tracker.current
        if not switchover_settling(run_state, current.role if current else None):
            return
        await asyncio.sleep(SETTLE_S)


def follow_role(view: VmView, *, always: bool = False) -> InfoPayload | None:
    """Publish ``info`` if its facts or the role changed (or ``always``: a new session),
    clear a ``dirty_rate`` the guest's role no longer has, and settle the role. Returns
    the ``info`` payload when one was published (``vm-online`` hooks read it)."""
    if view.info is None:
        return None
    role, moved = view.settle_role()
    if moved:
        log.info("VM %s: role %s (%s)", view.name, role.role, role.reason)
    payload = None
    shown = InfoShown(view.info, role)
    if republish_info(view.info_shown, shown, always=always):
        stamp = view.out.stamp()
        payload = render.info_payload(stamp, view.info, role, view.qmp_label,
                                      view.identity.pid)
        view.out.publish(render.vm_message(stamp, TopicKind.INFO, payload))
        view.info_shown = shown
    if not reports_dirty_rate(role) and view.vm.dirty_rate_retained is not False:
        view.out.clear(TopicKind.DIRTY_RATE)
        view.vm.dirty_rate_retained = False
    return payload
