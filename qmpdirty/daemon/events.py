"""One VM's QMP events: published verbatim, then acted on by type (shell, one task).

Every event goes out on ``vm/<vm>/event/<EVENT>`` as QEMU sent it. Then its typed
observation (``qmp.translate.observation_from``) says what else happens: migration
observations go to ``Migrations``, a run-state change or a migration's end refreshes
``info``, a topology change wakes the VFIO task. Must not look at an event's name or
``data`` itself: the translation did, once.
"""

from __future__ import annotations

import logging

from qmpdirty.daemon.migrations import Migrations
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.errors import QmpReplyError, QmpTimeoutError
from qmpdirty.facts.events import (
    DeviceStateSeen,
    EventObservation,
    MigrationPassSeen,
    MigrationStatusSeen,
    OtherEvent,
    RunStateChanged,
    TopologyChanged,
)
from qmpdirty.qmp import queries, translate
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import Outgoing

log = logging.getLogger(__name__)


async def refresh_info(view: VmView) -> Outgoing:
    """Read and publish ``info``; the message is returned for the ``vm-online`` hook."""
    view.info = await queries.gather_info(view.session, view.version, view.identity,
                                          view.events_on)
    msg = render.info(view.out.stamp(), view.info, view.qmp_label, view.identity.pid)
    view.out.publish(msg)
    return msg


async def read_events(view: VmView, migrations: Migrations) -> None:
    """The task: every event, in arrival order, until the session ends."""
    dropped_seen = 0
    while True:
        raw = await view.session.next_event()
        if (dropped := view.session.dropped_events) != dropped_seen:
            log.warning("VM %s: event queue full, %d events dropped so far", view.name,
                        dropped)
            dropped_seen = dropped
        try:
            event = translate.event_from(raw)
        except QmpReplyError as exc:
            log.warning("VM %s: ignoring malformed event: %s", view.name, exc)
            continue
        view.out.publish(render.event(view.out.stamp(), event, view.event_expiry()))
        await _react(view, migrations, translate.observation_from(event))


async def _react(view: VmView, migrations: Migrations, seen: EventObservation) -> None:
    match seen:
        case MigrationStatusSeen(status=status):
            await migrations.seen(seen)
            if mig.is_terminal(status):  # the run state moved on (postmigrate, running)
                await _refresh_info_if_answering(view)
        case MigrationPassSeen() | DeviceStateSeen():
            await migrations.seen(seen)
        case RunStateChanged():
            await _refresh_info_if_answering(view)
        case TopologyChanged():
            view.topology_changed.set()
        case OtherEvent():
            pass


async def _refresh_info_if_answering(view: VmView) -> None:
    try:
        await refresh_info(view)
    except QmpTimeoutError:
        log.debug("VM %s: info refresh timed out", view.name)
