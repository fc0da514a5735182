"""One VM's QMP events: published verbatim at once, then acted on by type (shell, two
tasks).

``EventStream.forward`` runs from the moment the VM is identified, before the rest of
its session starts (``info``, the first gathers): every event goes out on
``vm/<vm>/event/<EVENT>`` as QEMU sent it, the moment it is read, and to the
hook runner, which runs the ``qmp:NAME`` hooks it is due for. What it says (its
typed observation, ``qmp.translate.observation_from``) waits in a bounded queue for
``EventStream.react``, which runs once the pipeline has started: migration
observations go to ``Migrations``, a run-state change or a migration's end refreshes
``info`` and with it the VM's role (``daemon.info``), a topology change wakes the VFIO
task. Reacting may ask QEMU (a poll, a refresh): the events behind it are published
meanwhile. When reactions fall ``qmp.event_queue_size`` behind, ``forward`` waits, and
the session's own queue (which drops its oldest) takes the rest.

An event that cannot be read or published, or that the full session queue dropped, is
counted (``daemon.losses``) and the session carries on. Must not look at an event's
name or ``data`` itself: the translation did, once.
"""

from __future__ import annotations

import asyncio
import logging

from qmpdirty.daemon.info import refresh_info_after_migration, refresh_info_if_answering
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


class EventStream:
    """One VM's events over one session: ``forward`` publishes, ``react`` acts."""

    def __init__(self, view: VmView, migrations: Migrations) -> None:
        self._view = view
        self._migrations = migrations
        self._seen: asyncio.Queue[EventObservation] = asyncio.Queue(
            maxsize=view.cfg.qmp.event_queue_size)
        self._dropped = 0  # the session's count, as last reported

    async def forward(self) -> None:
        """The task from identification on: every event, in arrival order, published
        the moment it is read; what it says queued for ``react``."""
        view = self._view
        while True:
            try:
                event = translate.event_from(await view.session.next_event())
            except QmpReplyError as exc:
                view.losses.unreadable(view.name, str(exc))
                continue
            finally:
                self._count_dropped()
            view.out.publish(render.event(view.out.stamp(), event, view.event_expiry()))
            view.out.fire_qmp(event)
            await self._seen.put(translate.observation_from(event))

    async def react(self) -> None:
        """The task once the pipeline has started: act on each event, in order (those
        that came while it started first)."""
        while True:
            await _react(self._view, self._migrations, await self._seen.get())

    def unreacted(self) -> list[EventObservation]:
        """What was queued and not yet acted on (the session ended): taken out."""
        left: list[EventObservation] = []
        while not self._seen.empty():
            left.append(self._seen.get_nowait())
        return left

    def _count_dropped(self) -> None:
        dropped = self._view.session.dropped_events
        if dropped != self._dropped:
            self._view.losses.dropped(self._view.name, dropped - self._dropped)
            self._dropped = dropped


async def _react(view: VmView, migrations: Migrations, seen: EventObservation) -> None:
    match seen:
        case MigrationStatusSeen(status=status):
            await migrations.seen(seen)
            if mig.is_terminal(status):  # the run state moves on (postmigrate, running)
                await refresh_info_after_migration(view)
        case MigrationPassSeen() | DeviceStateSeen():
            await migrations.seen(seen)
        case RunStateChanged():
            await refresh_info_if_answering(view)
        case TopologyChanged():
            view.topology_changed.set()
        case OtherEvent():
            pass
