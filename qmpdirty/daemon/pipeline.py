"""One VM over one live QMP session: identify, start, run its tasks, end (shell).

``VmPipeline.identify`` asks who is on the other end and claims the VM's name;
``run`` owns one ``TaskGroup`` of named tasks, one module each. The first,
``events``, publishes every event from then on, while the group's body starts the VM
(``info`` with its role, ``online``, discovery): at 1,000 VMs the start waits behind
every other VM's, and events must not wait with it. Then come ``reactions`` (what the
events say), ``migrations`` (the poller), ``forecasts`` (the first ``forecast`` comes
from this task, once the VM's role and, with ``[vfio]``, its blockers are known),
``liveness``, ``dirty_rate`` and ``vfio``; the group ends the moment QEMU hangs up.
They share one ``VmView``. Leaving ``run`` (by any exception) reports a migration in
flight ``lost``; ``offline`` is published by the fleet once it knows the session did
not fail. A pipeline is used for one session only; the fleet makes a new one. Must
not catch what its tasks raise: the fleet's ``run_session`` is the one place that does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from qmpdirty.daemon.announce import announce
from qmpdirty.daemon.dirty_rate import measure_dirty_rate
from qmpdirty.daemon.events import EventStream
from qmpdirty.daemon.forecasts import Forecasts
from qmpdirty.daemon.info import refresh_info
from qmpdirty.daemon.liveness import watch_liveness
from qmpdirty.daemon.migrations import Migrations
from qmpdirty.daemon.parameters import refresh_params
from qmpdirty.daemon.vfio import VfioWatch
from qmpdirty.daemon.view import VmView
from qmpdirty.daemon.vm import Context, SessionOwner, VmPublisher, VmRecord
from qmpdirty.errors import QmpClosedError, QmpCommandError
from qmpdirty.facts.qemu import (
    OLDEST_SUPPORTED,
    QemuVersion,
    release_text,
    since,
    version_text,
)
from qmpdirty.facts.vm import VmIdentity
from qmpdirty.qmp import queries
from qmpdirty.qmp.session import QmpSession
from qmpdirty.telemetry.topics import Topics, sanitise

log = logging.getLogger(__name__)


class VmPipeline:
    """The telemetry pipeline of one VM over one live QMP session."""

    def __init__(self, ctx: Context, session: QmpSession, vm: VmRecord, *,
                 version: QemuVersion, identity: VmIdentity, qmp_label: str) -> None:
        self.view = VmView(session=session, cfg=ctx.cfg, vm=vm, out=VmPublisher(ctx, vm),
                           clock=ctx.clock, version=version, identity=identity,
                           qmp_label=qmp_label, losses=ctx.losses,
                           host_vfio=ctx.host_vfio)
        self._topics: Topics = ctx.topics
        self.forecasts = Forecasts(self.view)
        self.migrations = Migrations(self.view)
        self.events = EventStream(self.view, self.migrations)
        self.vfio = VfioWatch(self.view)

    @classmethod
    async def identify(cls, ctx: Context, session: QmpSession, owner: SessionOwner, *,
                       fallback_name: str, pid: int | None) -> VmPipeline:
        """Ask QEMU its version, name and UUID; claim the VM's topic name for ``owner``
        (``fallback_name`` when QEMU has no ``-name``) as this VM's (``Context.claim``,
        ``SessionOwner.key``)."""
        version = await queries.qemu_version(session)
        if not since(version, OLDEST_SUPPORTED):
            log.warning("%s: QEMU %s is older than %s; replies may not match",
                        owner.label, version_text(version), release_text(OLDEST_SUPPORTED))
        identity = await queries.identify(session, pid)
        vm = ctx.claim(sanitise(identity.name or fallback_name), owner, owner.key(identity))
        return cls(ctx, session, vm, version=version, identity=identity,
                   qmp_label=owner.label)

    @property
    def vm(self) -> VmRecord:
        return self.view.vm

    async def run(self, started: Callable[[], None] | None = None) -> None:
        """Publish events at once, start (``online``; then ``started()``), work until
        the session ends (raises). On the way out, whatever the reason, migration events
        not acted on yet are observed, and a migration in flight is ``lost``."""
        try:
            await self._run_tasks(started)
        finally:
            self.migrations.catch_up(self.events.unreacted())
            self.migrations.session_lost()

    def offline(self) -> None:
        """The session ended without a failure: ``offline`` (a failed one is ``error``,
        which the fleet publishes)."""
        self.view.out.state("offline")
        self.view.out.fire_offline()
        log.info("VM %s offline", self.view.name)

    async def _start(self) -> None:
        view = self.view
        view.events_on = await self._ensure_events()
        view.blockers_pending = view.cfg.vfio.enabled
        await refresh_params(view)
        info = await refresh_info(view, always=True)
        view.out.state("online")
        if info is not None:  # always: the facts were just read
            view.out.fire_online(info)
        announce(view, self._topics)
        log.info("VM %s online (%s, QEMU %s)", view.name, view.qmp_label,
                 view.info.basics.version_text if view.info else "?")
        await self.migrations.poll()

    async def _run_tasks(self, started: Callable[[], None] | None) -> None:
        """The tasks, until QEMU hangs up (``QmpClosedError``) or one fails.

        The group's own body starts the VM, then waits for the hang-up: a failing task
        always finds the body awaiting, never the group's exit, and Python 3.11's
        TaskGroup takes back the cancellation it sent the body (it would not at its
        exit), so the task's ``cancelling()`` counts only cancellations from outside."""
        view, name = self.view, self.view.name
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.events.forward(), name=f"{name}:events")
            await self._start()
            if started is not None:
                started()
            tg.create_task(self.events.react(), name=f"{name}:reactions")
            tg.create_task(self.migrations.poll_while_migrating(), name=f"{name}:migrate-poll")
            tg.create_task(self.forecasts.run(), name=f"{name}:forecast")
            tg.create_task(watch_liveness(view), name=f"{name}:liveness")
            if view.cfg.dirty_rate.enabled:
                tg.create_task(measure_dirty_rate(view), name=f"{name}:dirty-rate")
            if view.cfg.vfio.enabled:
                tg.create_task(self.vfio.run(), name=f"{name}:vfio")
            await view.session.wait_closed()
            raise QmpClosedError(f"{view.qmp_label}: QEMU closed the QMP connection")

    async def _ensure_events(self) -> bool:
        """Capability ``events`` on (policy permitting), so MIGRATION events arrive."""
        session = self.view.session
        on = await queries.migration_events_on(session)
        if on or not self.view.cfg.qmp.enable_migration_events:
            return on
        try:
            await queries.enable_migration_events(session)
        except QmpCommandError as exc:
            log.warning("VM %s: cannot enable migration events: %s", self.view.name, exc.desc)
            return False
        return True
