"""One VM's migrations on one QMP session: track, poll, forecast, publish (shell).

Feeds the pure tracker (``decisions.migration``) from MIGRATION / MIGRATION_PASS
events and ``query-migrate`` polls (faster near the end), keeps the forecaster's
samples, and publishes ``migration`` (with the forecast made at that poll),
``migration/pass``, ``migration/summary``, the in-migration ``dirty_rate`` (QEMU's,
else an estimate from the start) and the retained pre-migration ``forecast``.
With ``[policy] apply_recommendations`` and not under libvirt it raises
``downtime-limit`` once per migration when the forecast says it will not converge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from qmpdirty.config import Config
from qmpdirty.daemon.vm import VmPublisher
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.forecast import Published, material_change
from qmpdirty.decisions.migration.forecaster import Forecaster, ForecastView
from qmpdirty.errors import QmpClosedError, QmpError
from qmpdirty.facts.events import DeviceStateSeen
from qmpdirty.facts.vm import MigrationSnapshot, VmInfo
from qmpdirty.qmp import queries
from qmpdirty.qmp.session import QmpSession
from qmpdirty.sinks.hooks import forecast_turned_negative
from qmpdirty.telemetry import forecast as fc
from qmpdirty.telemetry import render

log = logging.getLogger(__name__)

#: How long an idle VM waits between ``query-migrate`` polls when events are off.
IDLE_POLL_WITHOUT_EVENTS_S = 5.0


class MigrationWatch:
    """Migration tracking and forecasting for one VM's live session."""

    def __init__(self, session: QmpSession, out: VmPublisher, forecaster: Forecaster,
                 info: Callable[[], VmInfo | None], has_vfio: Callable[[], bool]) -> None:
        self.session = session
        self.out = out
        self.forecaster = forecaster
        self.info = info
        self.has_vfio = has_vfio
        self.events_on = False
        self.migrating = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self._applied: set[str] = set()
        self._pending_downtime_ms: int | None = None
        self._last_converges: bool | None = None
        self._last_forecast: Published | None = None
        self._last_status: str | None = None

    @property
    def cfg(self) -> Config:
        return self.out.ctx.cfg

    def now(self) -> float:
        return self.out.ctx.clock()

    # --- inputs --------------------------------------------------------------

    async def on_event(self, name: str, data: dict[str, Any]) -> None:
        """MIGRATION / MIGRATION_PASS: poll right away for figures, then observe."""
        if name == "MIGRATION":
            status = data.get("status")
            status = status if isinstance(status, str) else None
            if status == "setup":
                await self.refresh_params()
            self.observe(mig.StatusSeen(status, await self.snapshot_or_none()))
        elif name == "MIGRATION_PASS" and isinstance(data.get("pass"), int):
            self.observe(mig.PassSeen(data["pass"], await self.snapshot_or_none()))
        elif name == "VFIO_MIGRATION":
            device = data.get("qom-path") or data.get("device-id")
            state = data.get("device-state")
            if isinstance(device, str) and isinstance(state, str):
                self.observe(DeviceStateSeen(device, state))
        await self.apply_pending()

    async def poller(self) -> None:
        mcfg = self.cfg.migration
        while True:
            interval = mig.poll_interval_s(self.out.vm.tracker, mcfg.poll_interval_s,
                                           mcfg.poll_interval_fast_s)
            if interval is None:
                if self.events_on:
                    await self.migrating.wait()
                    continue
                interval = IDLE_POLL_WITHOUT_EVENTS_S
            await asyncio.sleep(interval)
            await self.poll()

    async def poll(self) -> None:
        snap = await self.snapshot_or_none()
        if snap is not None:
            self.observe(mig.from_poll(self.out.vm.tracker, snap, self.events_on))
            await self.apply_pending()

    async def snapshot_or_none(self) -> MigrationSnapshot | None:
        try:
            return await queries.migration_snapshot(self.session)
        except QmpClosedError:
            raise
        except QmpError as exc:
            log.warning("VM %s: query-migrate: %s", self.out.vm.name, exc)
            return None

    async def refresh_params(self) -> None:
        try:
            self.forecaster.params = await queries.migration_params(self.session)
        except QmpClosedError:
            raise
        except QmpError as exc:
            log.warning("VM %s: query-migrate-parameters: %s", self.out.vm.name, exc)

    # --- the tracker and what it publishes -------------------------------------

    def observe(self, seen: mig.Observation) -> None:
        """Advance the tracker and publish what it says to publish."""
        info = self.info()
        role: mig.Role = "destination" if info and info.run_state == "inmigrate" else "source"
        was_active = mig.is_active(self.out.vm.tracker)
        self.out.vm.tracker, effects = mig.observe(self.out.vm.tracker, seen, self.now(), role)
        if not was_active and mig.is_active(self.out.vm.tracker):
            self.forecaster.begin()
            self._applied = set()
        snap = getattr(seen, "snapshot", None)
        if snap is not None and mig.is_active(self.out.vm.tracker):
            self.forecaster.sample(self.now(), snap)
        for effect in effects:
            self._publish(effect)
        active = mig.is_active(self.out.vm.tracker)
        (self.migrating.set if active else self.migrating.clear)()
        (self.idle.clear if active else self.idle.set)()

    def _publish(self, effect: mig.Effect) -> None:
        if isinstance(effect, mig.MigrationChanged):
            view = self.forecaster.during(effect.migration, self.now(), self.info(),
                                          self.has_vfio())
            msg = render.migration(self.out.stamp(), effect.migration, fc.summary(view.forecast),
                                   fc.recommendations(view.advice, self._applied))
            self.out.send(msg)
            if effect.migration.status != self._last_status:
                self._last_status = effect.migration.status
                self.out.fire("migration-status", msg)
            self._publish_rate(view)
            self._maybe_apply(view)
        elif isinstance(effect, mig.PassCompleted):
            self.out.send(render.pass_record(self.out.stamp(), effect.migration,
                                             effect.pass_no, self.expiry()))
            # the forecast inside ``migration`` is renewed at every pass as well as poll
            self._publish(mig.MigrationChanged(effect.migration))
        else:
            log.info("VM %s: migration %s %s", self.out.vm.name, effect.migration.id,
                     effect.outcome)
            self.forecaster.ended()
            self.out.send(render.summary(self.out.stamp(), effect.migration,
                                         effect.outcome, effect.ended_ts))

    def _publish_rate(self, view: ForecastView) -> None:
        d = view.dirty
        if d is None or d.source == "calc-dirty-rate":
            return
        self.out.send(render.dirty_rate_during_migration(
            self.out.stamp(), d.bytes_per_s, None, self.dirty_rate_expiry(), source=d.source,
            basis=d.basis))

    def _maybe_apply(self, view: ForecastView) -> None:
        policy = self.cfg.policy
        if (not policy.apply_recommendations or policy.under_libvirt
                or view.forecast.converges is not False or "downtime-limit" in self._applied):
            return
        advice = next((a for a in view.advice if a.action == "downtime-limit"), None)
        if advice is None or advice.value is None:
            return
        self._applied.add("downtime-limit")
        self._pending_downtime_ms = int(advice.value)

    async def apply_pending(self) -> None:
        """Policy action queued by ``observe``: raise downtime-limit (logged, and
        published as ``applied`` in the recommendations)."""
        ms, self._pending_downtime_ms = self._pending_downtime_ms, None
        if ms is None:
            return
        try:
            await self.session.execute("migrate-set-parameters", {"downtime-limit": ms})
            log.warning("VM %s: policy applied downtime-limit=%d ms (forecast: no convergence)",
                        self.out.vm.name, ms)
        except QmpError as exc:
            log.warning("VM %s: could not apply downtime-limit=%d: %s", self.out.vm.name, ms,
                        exc)
            self._applied.discard("downtime-limit")

    # --- before any migration --------------------------------------------------

    def publish_forecast(self, *, only_if_moved: bool = False) -> None:
        """The retained pre-migration ``forecast`` (not while a migration runs);
        ``only_if_moved``: skip it unless it changed materially (``material_change``)."""
        if mig.is_active(self.out.vm.tracker):
            return
        view = self.forecaster.before(self.now(), self.info(), self.has_vfio())
        published = (view.forecast, view.advice)
        if only_if_moved and not material_change(self._last_forecast, published):
            return
        self._last_forecast = published
        msg = fc.forecast(self.out.stamp(), view.inputs, view.forecast, view.advice,
                          bandwidth_source=view.bandwidth_source, dirty=view.dirty)
        self.out.send(msg)
        converges = view.forecast.converges
        if forecast_turned_negative(self._last_converges, converges):
            self.out.fire("forecast-negative", msg)
        self._last_converges = converges

    def expiry(self) -> int | None:
        return self.cfg.mqtt.event_expiry_s or None

    def dirty_rate_expiry(self) -> int:
        return max(60, round(3 * self.cfg.dirty_rate.interval_s))
