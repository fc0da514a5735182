"""One VM's migrations on one QMP session: track, poll, publish (shell, one task).

Feeds the pure tracker (``decisions.migration.tracker``) from the typed MIGRATION,
MIGRATION_PASS and VFIO_MIGRATION observations (``events`` hands them over) and from
``query-migrate`` polls (faster near the end), keeps the forecaster's samples, and
publishes ``migration`` (a source's with the forecast made at that poll; only when its
content changed), ``migration/pass``, ``migration/summary`` (each with the VM's
``uuid``) and, on a source whose guest runs, the in-migration ``dirty_rate`` (QEMU's,
else an estimate; only when it changed). A migration's start moves the VM's role
(``daemon.info``); its end does once the run state is read again. ``policy`` applies
what the forecast calls for, when allowed. Must not parse events or decide anything
the tracker, forecaster, role or policy decide.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from qmpdirty.daemon.forecasts import refresh_params
from qmpdirty.daemon.info import follow_role, refresh_info_if_answering
from qmpdirty.daemon.policy import PolicyActions
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.errors import cause_of
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.role import reports_dirty_rate
from qmpdirty.errors import QmpQueryError
from qmpdirty.facts.events import DeviceStateSeen, MigrationPassSeen, MigrationStatusSeen
from qmpdirty.facts.vm import MigrationSnapshot
from qmpdirty.qmp import queries
from qmpdirty.telemetry import render, schema
from qmpdirty.telemetry.render import forecast as fc

log = logging.getLogger(__name__)

#: How long an idle VM waits between ``query-migrate`` polls when events are off.
IDLE_POLL_WITHOUT_EVENTS_S = 5.0


class Migrations:
    """Migration tracking and its publications for one VM's live session."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self._policy = PolicyActions(view)
        self._last_status: str | None = None  # of the last ``migration-status`` hook
        #: what ``migration`` showed last (but the time), to skip unchanged polls
        self._shown: tuple[mig.Migration, schema.ForecastSummary | None,
                           list[schema.Recommendation]] | None = None
        self._rate_shown: tuple[float, str, str] | None = None  # the in-migration rate

    # --- inputs --------------------------------------------------------------

    async def seen(self, event: MigrationStatusSeen | MigrationPassSeen | DeviceStateSeen
                   ) -> None:
        """A migration event: poll right away for its figures (a device's state needs
        none), then observe."""
        match event:
            case MigrationStatusSeen(status=status):
                if status == "setup":
                    await refresh_params(self._view)
                self.observe(mig.StatusSeen(status, await self.snapshot_or_none()))
            case MigrationPassSeen(pass_no=pass_no):
                self.observe(mig.PassSeen(pass_no, await self.snapshot_or_none()))
            case DeviceStateSeen():
                self.observe(event)
        await self._policy.apply()

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
                await refresh_info_if_answering(v)  # ended without its event: the role moved

    async def snapshot_or_none(self) -> MigrationSnapshot | None:
        try:
            return await queries.migration_snapshot(self._view.session)
        except QmpQueryError as exc:
            log.warning("VM %s: query-migrate: %s", self._view.name, exc)
            return None

    def session_lost(self) -> None:
        """The session ended: a migration in flight is ``lost``."""
        self.observe(mig.SessionLost())

    # --- the tracker and what it publishes -------------------------------------

    def observe(self, seen: mig.Observation) -> None:
        """Advance the tracker and publish what it says to publish."""
        v = self._view
        was_active = mig.is_active(v.vm.tracker)
        v.vm.tracker, effects = mig.observe(v.vm.tracker, seen, v.clock(), v.migration_role)
        active = mig.is_active(v.vm.tracker)
        if active and not was_active:
            v.forecaster.begin()
            self._policy.migration_began()
            self._rate_shown = None
        snap = mig.snapshot_of(seen)
        if snap is not None and active:
            v.forecaster.sample(v.clock(), snap)
        for effect in effects:
            self._publish(effect)
        v.migration_running(active)
        if active and not was_active:
            follow_role(v)  # migrating-out, or receiving; its end waits for the run state

    def _publish(self, effect: mig.Effect) -> None:
        v = self._view
        match effect:
            case mig.MigrationChanged(migration=m):
                self._changed(m)
            case mig.PassCompleted(migration=m, pass_no=pass_no):
                v.out.publish(render.pass_record(v.out.stamp(), m, pass_no, v.event_expiry(),
                                                 uuid=v.identity.uuid))
                self._changed(m)  # the forecast in ``migration`` is renewed at every pass
            case mig.MigrationEnded(migration=m, outcome=outcome, ended_ts=ended_ts):
                log.info("VM %s: migration %s %s", v.name, m.id, outcome)
                v.forecaster.ended()
                v.out.publish(render.summary(v.out.stamp(), m, outcome, ended_ts, cause_of(m),
                                             uuid=v.identity.uuid))

    def _changed(self, m: mig.Migration) -> None:
        """``migration`` with this poll's forecast (a source's: a destination has none),
        when its content changed; its hook when the status moved."""
        v = self._view
        view = v.forecaster.during(m, v.clock(), v.info, v.has_vfio) \
            if m.role == "source" else None
        summary = fc.summary(view.outlook, mig.passes_done(m)) if view else None
        advice = fc.recommendations(view.advice, self._policy.applied) if view else []
        shown = (replace(m, terminal_polls=0), summary, advice)
        if shown != self._shown:
            self._shown = shown
            msg = render.migration(v.out.stamp(), m, uuid=v.identity.uuid, forecast=summary,
                                   recommendations=advice)
            v.out.publish(msg)
            if m.status != self._last_status:
                self._last_status = m.status
                v.out.fire("migration-status", msg)
        if view is not None:
            self._publish_rate(view.dirty)
            self._policy.consider(view)

    def _publish_rate(self, d: DirtyEstimate | None) -> None:
        """The in-migration ``dirty_rate``, while the guest runs and when it changed."""
        v = self._view
        if d is None or d.source == "calc-dirty-rate" or not reports_dirty_rate(v.role):
            return
        if (d.bytes_per_s, d.source, d.mode) == self._rate_shown:
            return
        self._rate_shown = (d.bytes_per_s, d.source, d.mode)
        v.out.publish(render.dirty_rate_during_migration(v.out.stamp(), d,
                                                         v.dirty_rate_expiry()))
        v.vm.dirty_rate_retained = True
