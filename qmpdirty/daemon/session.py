"""Everything the daemon does on one live QMP session (shell).

One ``TaskGroup`` per session: events (published verbatim and fed to the migration
tracker), ``query-migrate`` polling while a migration runs, periodic dirty-rate
measurement, and a watcher that ends the group the moment QEMU hangs up. The
session's end is final for this object; the supervisor makes a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from typing import Any

from qmpdirty.daemon.migrations import MigrationWatch
from qmpdirty.daemon.vfio import gather_and_evaluate
from qmpdirty.daemon.vm import Context, VmPublisher, VmState
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.dirtyrate import (
    DirtyRatePlan,
    choose_mode,
    error_bound,
    seconds_until_due,
)
from qmpdirty.errors import (
    QmpClosedError,
    QmpCommandError,
    QmpError,
    QmpReplyError,
    QmpTimeoutError,
)
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.vm import VmIdentity, VmInfo
from qmpdirty.qmp import gather as topology
from qmpdirty.qmp import queries, translate
from qmpdirty.qmp.gather import TopologyReader
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology.replies import QomChild
from qmpdirty.telemetry import render, vfio
from qmpdirty.telemetry.discovery import discovery_messages
from qmpdirty.telemetry.render import Outgoing, VmStamp

log = logging.getLogger(__name__)

#: Events after which the run state (and so ``info``) may have changed.
RUN_STATE_EVENTS = frozenset({
    "STOP", "RESUME", "SHUTDOWN", "RESET", "SUSPEND", "WAKEUP", "POWERDOWN", "GUEST_PANICKED",
})
#: Events after which the VFIO topology (devices, memory map) may have changed.
TOPOLOGY_EVENTS = frozenset({"DEVICE_ADDED", "DEVICE_DELETED", "MEMORY_DEVICE_SIZE_CHANGE"})


class SessionWatch:
    """Runs the telemetry pipeline for one VM over one live QMP session."""

    def __init__(
        self, ctx: Context, session: QmpSession, vm: VmState, *,
        version: QemuVersion, identity: VmIdentity, qmp_label: str,
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.vm = vm
        self.version = version
        self.identity = identity
        self.qmp_label = qmp_label
        self.out = VmPublisher(ctx, vm)
        self.info: VmInfo | None = None
        self.has_vfio = False
        self.migrations = MigrationWatch(session, self.out, vm.forecaster(ctx.cfg.forecast),
                                         lambda: self.info, lambda: self.has_vfio)
        self._dropped_seen = 0
        self._topology_changed = asyncio.Event()
        self._published_vfio: tuple[bytes, bytes] | None = None
        self.topology = TopologyReader(session)

    async def run(self) -> None:
        """Publish ``online`` and state, then work until the session ends (raises)."""
        self.migrations.events_on = await self._ensure_events()
        await self.migrations.refresh_params()
        info_msg = await self._refresh_info()
        self.out.status(online=True)
        self.out.fire("vm-online", info_msg)
        self._announce()
        log.info("VM %s online (%s, QEMU %s)", self.vm.name, self.qmp_label,
                 self.info.basics.version_text if self.info else "?")
        await self.migrations.poll()
        self.migrations.publish_forecast()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._hangup(), name=f"{self.vm.name}:hangup")
            tg.create_task(self._events(), name=f"{self.vm.name}:events")
            tg.create_task(self.migrations.poller(), name=f"{self.vm.name}:migrate-poll")
            tg.create_task(self._forecasts(), name=f"{self.vm.name}:forecast")
            tg.create_task(self._liveness(), name=f"{self.vm.name}:liveness")
            if self.ctx.cfg.dirty_rate.enabled:
                tg.create_task(self._dirty_rate(), name=f"{self.vm.name}:dirty-rate")
            if self.ctx.cfg.vfio.enabled:
                tg.create_task(self._vfio(), name=f"{self.vm.name}:vfio")

    def session_lost(self, offline: bool = True) -> None:
        """The session ended: a migration in flight is ``lost``; the VM is ``offline``
        (unless the session failed: the caller publishes ``error`` instead)."""
        self.migrations.observe(mig.SessionLost())
        if offline:
            self.out.status(online=False)
            self.out.fire("vm-offline")

    # --- setup -------------------------------------------------------------

    async def _ensure_events(self) -> bool:
        """Capability ``events`` on (policy permitting), so MIGRATION events arrive."""
        on = await queries.migration_events_on(self.session)
        if on or not self.ctx.cfg.qmp.enable_migration_events:
            return on
        try:
            await queries.enable_migration_events(self.session)
        except QmpCommandError as exc:
            log.warning("VM %s: cannot enable migration events: %s", self.vm.name, exc.desc)
            return False
        return True

    async def _refresh_info(self) -> Outgoing:
        self.info = await queries.gather_info(self.session, self.version, self.identity,
                                              self.migrations.events_on)
        msg = render.info(self.out.stamp(), self.info, self.qmp_label, self.identity.pid)
        self.out.send(msg)
        return msg

    async def _refresh_info_if_answering(self) -> None:
        try:
            await self._refresh_info()
        except QmpTimeoutError:
            log.debug("VM %s: info refresh timed out", self.vm.name)

    def _announce(self) -> None:
        """Home Assistant discovery, once per VM per daemon run (retained)."""
        ha = self.ctx.cfg.homeassistant
        if ha.enabled and not self.vm.discovery_sent:
            for msg in discovery_messages(self.ctx.topics, self.vm.name, ha.discovery_prefix):
                self.out.send(msg)
            self.vm.discovery_sent = True

    # --- tasks -------------------------------------------------------------

    async def _hangup(self) -> None:
        await self.session.wait_closed()
        raise QmpClosedError(f"{self.qmp_label}: QEMU closed the QMP connection")

    async def _events(self) -> None:
        while True:
            raw = await self.session.next_event()
            self._note_dropped_events()
            try:
                event = translate.event_from(raw)
            except QmpReplyError as exc:
                log.warning("VM %s: ignoring malformed event: %s", self.vm.name, exc)
                continue
            self.out.send(render.event(self.out.stamp(), event, self._expiry()))
            await self._react(event.name, event.data)

    async def _react(self, name: str, data: dict[str, Any]) -> None:
        """Feed migration events to the tracker; refresh ``info`` on run-state changes."""
        if name in ("MIGRATION", "MIGRATION_PASS", "VFIO_MIGRATION"):
            await self.migrations.on_event(name, data)
            status = data.get("status")
            if name == "MIGRATION" and isinstance(status, str) and \
                    mig.PHASE_OF.get(status) is mig.Phase.TERMINAL:
                await self._refresh_info_if_answering()
        elif name in RUN_STATE_EVENTS:
            await self._refresh_info_if_answering()
        elif name in TOPOLOGY_EVENTS:
            self._topology_changed.set()

    async def _dirty_rate(self) -> None:
        dcfg = self.ctx.cfg.dirty_rate
        schedule = DirtyRatePlan(dcfg.mode, dcfg.window_s, dcfg.sample_pages, dcfg.interval_s)
        last_start: float | None = None
        last_seen: tuple[float | None, float] | None = None
        spread = random.uniform(0.5, 1.5)  # the first repeat spreads VMs over the interval
        while True:
            delay = seconds_until_due(schedule, self.ctx.clock(), last_start,
                                      mig.is_active(self.vm.tracker), measuring=False,
                                      spread=spread)
            if delay is None:
                await self.migrations.idle.wait()
                continue
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if last_start is not None:  # the first repeat keeps its wide spread
                spread = random.uniform(0.9, 1.1)
            last_start = self.ctx.clock()
            mode, why = choose_mode(dcfg.mode, self.version, self.has_vfio)
            if why:
                log.info("VM %s: dirty rate by %s: %s", self.vm.name, mode, why)
            plan = DirtyRatePlan(mode, dcfg.window_s, dcfg.sample_pages, dcfg.interval_s)
            try:
                last_seen = await self._measure(plan, last_seen)
            except QmpTimeoutError:
                log.debug("VM %s: dirty-rate measurement timed out", self.vm.name)

    async def _measure(
        self, plan: DirtyRatePlan, last_seen: tuple[float | None, float] | None
    ) -> tuple[float | None, float] | None:
        """One ``calc-dirty-rate``; publish it unless it is the previous result again."""
        try:
            await queries.start_dirty_rate(self.session, plan, self.version)
        except QmpCommandError as exc:
            # "the dirty rate is already being measured": someone else is; try later.
            log.info("VM %s: calc-dirty-rate: %s", self.vm.name, exc.desc)
            return last_seen
        await asyncio.sleep(plan.window_s)
        deadline = self.ctx.clock() + plan.window_s + self.ctx.cfg.qmp.command_timeout_s
        while self.ctx.clock() < deadline:
            found = await queries.read_dirty_rate(self.session, self.version)
            if found is not None and (found.started_at_s, found.bytes_per_s) != last_seen:
                ram = self.info.basics.ram_bytes if self.info else None
                bound, basis = error_bound(found, ram)
                self.out.send(render.dirty_rate_measured(
                    self.out.stamp(), found, self._dirty_rate_expiry(), error_bound_rel=bound,
                    basis=basis))
                self.migrations.forecaster.measured(found, self.ctx.clock())
                self.migrations.publish_forecast(only_if_moved=True)
                return (found.started_at_s, found.bytes_per_s)
            await asyncio.sleep(0.1)
        log.warning("VM %s: dirty-rate measurement did not finish in time", self.vm.name)
        return last_seen

    async def _liveness(self) -> None:
        """A frozen QEMU (SIGSTOP, overload) keeps its socket open but answers nothing:
        ``unresponsive`` as soon as any command times out with nothing answered since,
        or a ``query-status`` probe does; ``online`` when it answers again. The session
        is kept; commands meanwhile time out and are skipped. The probe is sent only when
        no other command was answered within the interval (at 1,000 VMs the probes were
        200 commands/s for nothing); periods are jittered so VMs do not tick together."""
        interval = self.ctx.cfg.qmp.liveness_interval_s
        stalled = self.session.stalled
        while True:
            tick = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stalled.wait(), interval * random.uniform(0.9, 1.1))
            if stalled.is_set():
                stalled.clear()
                if self.session.answered_at < self.session.stalled_at:
                    self._unresponsive()
                    continue
            if self.session.answered_at > tick and self.vm.state == "online":
                continue  # another command was answered meanwhile: no probe needed
            try:
                await queries.run_state(self.session)
            except QmpTimeoutError:
                self._unresponsive()
                continue
            if self.vm.state == "unresponsive":
                log.info("VM %s: QEMU answers again: online", self.vm.name)
                self.out.state("online")

    def _unresponsive(self) -> None:
        if self.vm.state == "online":
            log.warning("VM %s: QEMU does not answer (frozen?): unresponsive", self.vm.name)
            self.out.state("unresponsive")

    async def _forecasts(self) -> None:
        """The retained pre-migration ``forecast``, refreshed periodically."""
        interval = self.ctx.cfg.forecast.publish_interval_s
        await asyncio.sleep(interval * random.uniform(0.5, 1.5))  # VMs started together
        while True:
            await self.migrations.refresh_params()
            self.migrations.publish_forecast()
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    async def _vfio(self) -> None:
        """Evaluate now (every new session publishes), then on topology events
        (debounced, everything re-read), on a hot-plug, and every ``refresh_interval_s``
        (cheap while the VM has no VFIO device: ``TopologyReader``); publish what changed.
        The first refresh comes after 0.5-1.5 intervals: VMs started together spread."""
        vcfg = self.ctx.cfg.vfio
        full, spread = True, random.uniform(0.5, 1.5)
        while True:
            await self._evaluate_vfio(full)
            full = await self._until_topology_changes(vcfg.refresh_interval_s * spread)
            spread = 1.0
            if full:
                await asyncio.sleep(vcfg.debounce_s)  # hot-plug bursts: evaluate once
                self._topology_changed.clear()

    async def _until_topology_changes(self, interval_s: float) -> bool:
        """Until an event says so (True), the device lists change or the refresh is due
        (False: the reader notices a new device itself).

        QEMU (<= 10.2) emits DEVICE_DELETED but no DEVICE_ADDED: a hot-plug shows only
        as a new child of /machine/peripheral[-anon], compared at most hotplug_poll_s
        apart; the refresh at the end lists them itself, so no poll falls on it."""
        poll_s = self.ctx.cfg.vfio.hotplug_poll_s
        steps = math.ceil(interval_s / poll_s) if poll_s else 1
        baseline = self.topology.peripherals
        for step in range(steps):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._topology_changed.wait(), interval_s / steps)
                return True
            if step < steps - 1 and await self._peripherals(baseline) != baseline:
                return False
        return False

    async def _peripherals(self, baseline: frozenset[QomChild]) -> frozenset[QomChild]:
        """The children of the device containers (two cheap ``qom-list`` calls); the
        baseline when QEMU cannot say (frozen: liveness reports it)."""
        try:
            return await topology.peripherals(self.session)
        except QmpClosedError:
            raise
        except QmpError:
            return baseline

    async def _evaluate_vfio(self, full: bool) -> None:
        try:
            view = await gather_and_evaluate(self.session, self.ctx.cfg, self.topology, full=full)
        except QmpClosedError:
            raise
        except QmpError as exc:
            log.warning("VM %s: VFIO evaluation failed: %s", self.vm.name, exc)
            return
        self.has_vfio = bool(view.topology.devices)
        probe = VmStamp(self.ctx.topics, self.vm.name, 0, 0.0)
        key = (vfio.tracking(probe, view).payload, vfio.blockers(probe, view).payload)
        if key == self._published_vfio:
            return
        before, self._published_vfio = self._published_vfio, key
        tracking = vfio.tracking(self.out.stamp(), view)
        blockers = vfio.blockers(self.out.stamp(), view)
        self.out.send(tracking)
        self.out.send(blockers)
        if before is not None and before[0] != key[0]:
            self.out.fire("tracking-changed", tracking)
        if before is not None and before[1] != key[1]:
            self.out.fire("blockers-changed", blockers)
        r = view.reconciled
        if not r.agree:
            log.warning("VM %s: predicted blockers differ from QEMU's: missing %s, "
                        "unexpected %s", self.vm.name, list(r.missing), list(r.unexpected))

    # --- small things --------------------------------------------------------

    def _expiry(self) -> int | None:
        return self.ctx.cfg.mqtt.event_expiry_s or None

    def _dirty_rate_expiry(self) -> int:
        """A rate older than three intervals is stale: let the broker drop it."""
        return max(60, round(3 * self.ctx.cfg.dirty_rate.interval_s))

    def _note_dropped_events(self) -> None:
        dropped = self.session.dropped_events
        if dropped != self._dropped_seen:
            log.warning("VM %s: event queue full, %d events dropped so far", self.vm.name,
                        dropped)
            self._dropped_seen = dropped
