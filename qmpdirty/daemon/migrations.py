"""One VM's migrations on one QMP session: track, poll, publish (shell, one task).

Feeds the pure tracker (``decisions.migration.tracker``) from the typed MIGRATION,
MIGRATION_PASS and VFIO_MIGRATION observations (``events`` hands them over) and from
``query-migrate`` polls (faster near the end), keeps the forecaster's samples, and
hands what the tracker says to publish to ``migration_records``. A migration's start
moves the VM's role (``daemon.info``); its end does once the run state is read again.
``policy`` applies what the forecast calls for, when allowed. Must not parse events or
decide anything the tracker, forecaster, role or policy decide.
"""

from __future__ import annotations

import asyncio
import logging

from qmpdirty.daemon.info import follow_role, refresh_info_after_migration
from qmpdirty.daemon.migration_records import MigrationRecords
from qmpdirty.daemon.parameters import refresh_params
from qmpdirty.daemon.policy import PolicyActions
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.errors import QmpQueryError
from qmpdirty.facts.events import (
    DeviceStateSeen,
    EventObservation,
    MigrationPassSeen,
    MigrationStatusSeen,
)
from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.qmp import queries

log = logging.getLogger(__name__)

MigrationEvent = MigrationStatusSeen | MigrationPassSeen | DeviceStateSeen

#: How long an idle VM waits between ``query-migrate`` polls when events are off.
IDLE_POLL_WITHOUT_EVENTS_S = 5.0


class Migrations:
    """Migration tracking and its publications for one VM's live session."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self._policy = PolicyActions(view)
        self._records = MigrationRecords(view, self._policy)
        self._unobserved: MigrationEvent | None = None  # seen, its figures being polled

    # --- inputs --------------------------------------------------------------

    async def seen(self, event: MigrationEvent) -> None:
        """A migration event: poll right away for its figures (a device's state needs
        none), then observe."""
        self._unobserved = event
        if isinstance(event, MigrationStatusSeen) and mig.rereads_params(event.status):
            await refresh_params(self._view)
        snap = None if isinstance(event, DeviceStateSeen) else await self.snapshot_or_none()
        self._unobserved = None
        self.observe(_observation(event, snap))
        await self._policy.apply()

    def catch_up(self, events: list[EventObservation]) -> None:
        """The session ended: what QEMU said that was not observed yet (the event being
        polled for, those still queued) is observed now, without figures, so that the
        summary's statuses and passes are all QEMU announced (and published)."""
        pending = [self._unobserved] if self._unobserved is not None else []
        self._unobserved = None
        for event in [*pending, *events]:
            if isinstance(event, MigrationStatusSeen | MigrationPassSeen | DeviceStateSeen):
                self.observe(_observation(event, None))

    async def poll_while_migrating(self) -> None:
        """The poller task: ``query-migrate`` while a migration runs (or, without
        events, every ``IDLE_POLL_WITHOUT_EVENTS_S``)."""
        mcfg = self._view.cfg.migration
        while True:
            interval = mig.poll_interval_s(self._view.vm.tracker, mcfg.poll_interval_s,
                                           mcfg.poll_interval_fast_s)
            if interval is None:
                if self._view.events_on:
                    await self._view.migrating.wait()
                    continue
                interval = IDLE_POLL_WITHOUT_EVENTS_S
            await asyncio.sleep(interval)
            await self.poll()

    async def poll(self) -> None:
        v = self._view
        snap = await self.snapshot_or_none()
        if snap is not None:
            was_active = mig.is_active(v.vm.tracker)
            self.observe(mig.from_poll(v.vm.tracker, snap, v.events_on))
            await self._policy.apply()
            if was_active and not mig.is_active(v.vm.tracker):
                await refresh_info_after_migration(v)  # ended without its event

    async def snapshot_or_none(self) -> MigrationSnapshot | None:
        try:
            return await queries.migration_snapshot(self._view.session)
        except QmpQueryError as exc:
            log.warning("VM %s: query-migrate: %s", self._view.name, exc)
            return None

    def session_lost(self) -> None:
        """The session ended: a migration in flight is ``lost``."""
        self.observe(mig.SessionLost())

    # --- the tracker ------------------------------------------------------------

    def observe(self, seen: mig.Observation) -> None:
        """Advance the tracker and publish what it says to publish."""
        v = self._view
        was_active = mig.is_active(v.vm.tracker)
        v.vm.tracker, effects = mig.observe(v.vm.tracker, seen, v.clock(), v.migration_role)
        active = mig.is_active(v.vm.tracker)
        if active and not was_active:
            v.forecaster.begin()
            self._policy.migration_began()
            self._records.began()
        snap = mig.snapshot_of(seen)
        if snap is not None and active:
            v.forecaster.sample(v.clock(), snap)
        for effect in effects:
            self._records.publish(effect)
        v.migration_running(active)
        if active and not was_active:
            follow_role(v)  # migrating-out, or receiving; its end waits for the run state


def _observation(event: MigrationEvent, snap: MigrationSnapshot | None) -> mig.Observation:
    """What the tracker observes of a migration event, with the figures polled for it."""
    match event:
        case MigrationStatusSeen(status=status):
            return mig.StatusSeen(status, snap)
        case MigrationPassSeen(pass_no=pass_no):
            return mig.PassSeen(pass_no, snap)
        case DeviceStateSeen():
            return event
