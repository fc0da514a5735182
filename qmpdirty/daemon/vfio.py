"""Keep one VM's ``tracking``/``blockers`` current (shell; one task).

Stage: shell glue. ``VfioWatch`` is the daemon's task: it evaluates (``vfio_verdict``)
at once, again on topology events, hot-plugs and a timer, and publishes when
``decisions.vfio.republish`` says so. Must not decide or compare payloads itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random

from qmpdirty.cancel import wait_set
from qmpdirty.daemon.vfio_verdict import gather_and_evaluate
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration.claim import BlockerState, blocker_state
from qmpdirty.decisions.vfio.hotplug import may_hot_plug
from qmpdirty.decisions.vfio.republish import Shown, republish, shown
from qmpdirty.errors import QmpQueryError
from qmpdirty.qmp import gather, queries
from qmpdirty.qmp.gather import TopologyReader
from qmpdirty.qmp.topology.replies import QomChild
from qmpdirty.telemetry.render import vfio

log = logging.getLogger(__name__)


class VfioWatch:
    """The VFIO task of one VM's session."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self._reader = TopologyReader(view.session, version=view.version)
        self._shown: Shown | None = None  # what this session published last

    async def run(self) -> None:
        """Evaluate now (every new session publishes), then on topology events
        (debounced, everything re-read), on a hot-plug, and every ``refresh_interval_s``
        (cheap while the VM has no VFIO device: ``TopologyReader``); publish what changed.
        The first refresh comes after 0.5-1.5 intervals: VMs started together spread."""
        vcfg = self._view.cfg.vfio
        full, spread = True, random.uniform(0.5, 1.5)
        while True:
            await self._evaluate(full)
            full = await self._until_topology_changes(vcfg.refresh_interval_s * spread)
            spread = 1.0
            if full:
                await asyncio.sleep(vcfg.debounce_s)  # hot-plug bursts: evaluate once
                self._view.topology_changed.clear()

    async def _until_topology_changes(self, interval_s: float) -> bool:
        """Until an event says so (True), a poll sees a change or the refresh is due
        (False: the reader notices a new device itself).

        QEMU emits DEVICE_DELETED but no DEVICE_ADDED (``facts.qemu``:
        ``LAST_WITHOUT_DEVICE_ADDED``), so a hot-plug is polled for, at most
        hotplug_poll_s apart (``_changed``); the refresh at the end reads everything
        itself, so no poll falls on it."""
        view = self._view
        poll_s = view.cfg.vfio.hotplug_poll_s
        steps = math.ceil(interval_s / poll_s) if poll_s else 1
        peripherals, reasons = self._reader.peripherals, self._reader.blocked_reasons
        for step in range(steps):
            if await wait_set(view.topology_changed, interval_s / steps):
                return True
            if step < steps - 1 and await self._changed(peripherals, reasons):
                return False
        return False

    async def _changed(self, peripherals: frozenset[QomChild],
                       reasons: tuple[str, ...] | None) -> bool:
        """Whether the VM changed since the last evaluation, as one poll can tell.

        While a VFIO device could come (``decisions.vfio.hotplug``: the host offers one,
        or QEMU has vfio-user), a new child of /machine/peripheral[-anon] (two
        ``qom-list``). Otherwise only a hot-plug that changes QEMU's ``blocked-reasons``
        can change what this task publishes (a device that adds a migration blocker,
        such as an ivshmem in peer mode): one ``query-migrate``, whose answer also
        spares the liveness probe. QEMU that cannot say (frozen: liveness reports it)
        is taken as unchanged."""
        view = self._view
        try:
            if may_hot_plug(view.host_vfio.devices, view.version):
                return await gather.peripherals(view.session) != peripherals
            if reasons is None:
                return False  # not evaluated yet: the refresh reads them
            snapshot = await queries.migration_snapshot(view.session)
        except QmpQueryError:
            return False
        return snapshot.blocked_reasons != reasons

    async def _evaluate(self, full: bool) -> None:
        v = self._view
        try:
            verdict = await gather_and_evaluate(v.session, v.cfg, self._reader, full=full,
                                                basics=v.info.basics if v.info else None)
        except QmpQueryError as exc:
            log.warning("VM %s: VFIO evaluation failed: %s", v.name, exc)
            self._share(v.blockers)
            return
        v.has_vfio = bool(verdict.topology.devices)
        self._share(blocker_state(verdict.reconciled))
        now = shown(verdict)
        decision = republish(self._shown, now)
        if not decision.publish:
            return
        self._shown = now
        tracking = vfio.tracking(v.out.stamp(), verdict)
        blockers = vfio.blockers(v.out.stamp(), verdict)
        v.out.publish(tracking)
        v.out.publish(blockers)
        if decision.tracking_changed:
            v.out.fire("tracking-changed", tracking)
        if decision.blockers_changed:
            v.out.fire("blockers-changed", blockers)
        r = verdict.reconciled
        if r.disagrees:
            log.warning("VM %s: predicted blockers differ from QEMU's: missing %s, "
                        "unexpected %s; not known: %s", v.name, list(r.missing),
                        list(r.unexpected), [f"{u.device}: {u.fact}" for u in r.unknown_facts])

    def _share(self, blockers: BlockerState | None) -> None:
        """Tell the forecast the blockers (held until the first evaluation ended)."""
        v = self._view
        if blockers != v.blockers or v.blockers_pending:
            v.blockers, v.blockers_pending = blockers, False
            v.claims_changed.set()
