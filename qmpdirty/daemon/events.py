"""One VM's QMP events: published verbatim, then acted on by type (shell, one task).

Every event goes out on ``vm/<vm>/event/<EVENT>`` as QEMU sent it, and to the hook
runner, which runs the ``qmp:NAME`` hooks it is due for. Then its typed
observation (``qmp.translate.observation_from``) says what else happens: migration
observations go to ``Migrations``, a run-state change or a migration's end refreshes
``info`` and with it the VM's role (``daemon.info``), a topology change wakes the VFIO
task. Must not look at an event's name or
``data`` itself: the translation did, once.
"""

from __future__ import annotations

import logging

from qmpdirty.daemon.info import refresh_info_if_answering
from qmpdirty.daemon.migrations import Migrations
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.errors import QmpReplyError
from qmpdirty.facts.events import (
    DeviceStateSeen,
    EventObservation,
    MigrationPassSeen,
    MigrationStatusSeen,
    OtherEvent,
    RunStateChanged,
    TopologyChanged,
)
from qmpdirty.qmp import translate
from qmpdirty.telemetry import render

log = logging.getLogger(__name__)


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
        view.out.fire_qmp(event)
        await _react(view, migrations, translate.observation_from(event))


async def _react(view: VmView, migrations: Migrations, seen: EventObservation) -> None:
    match seen:
        case MigrationStatusSeen(status=status):
            await migrations.seen(seen)
            if mig.is_terminal(status):  # the run state moved on (postmigrate, running)
                await refresh_info_if_answering(view)
        case MigrationPassSeen() | DeviceStateSeen():
            await migrations.seen(seen)
        case RunStateChanged():
            await refresh_info_if_answering(view)
        case TopologyChanged():
            view.topology_changed.set()
        case OtherEvent():
            pass

