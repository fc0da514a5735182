"""One VM as the tasks of its pipeline share it (shell).

A ``VmView`` is made per QMP session by ``pipeline.VmPipeline``; every task module
(events, liveness, dirty rate, migrations, VFIO, forecasts) reads what it needs from
it and writes back the little the others read (``info``, ``has_vfio``, ``blockers``,
the signals). The VM's role (``decisions.role``) is derived here from ``info`` and the
migration tracker; ``settle_role`` tells the waiting tasks when it moved. Must not hold
callables into other tasks, and must not do I/O itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from qmpdirty.config.load import Config
from qmpdirty.daemon.hotplug import HostVfio
from qmpdirty.daemon.losses import EventLosses
from qmpdirty.daemon.vm import VmPublisher, VmRecord
from qmpdirty.decisions.migration.claim import BlockerState
from qmpdirty.decisions.migration.forecaster import Forecaster
from qmpdirty.decisions.migration.republish import InfoShown
from qmpdirty.decisions.migration.tracker import Role
from qmpdirty.decisions.role import RoleVerdict, measures_dirty_rate, role_of
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.vm import DirtyRateMeasurement, VmIdentity, VmInfo
from qmpdirty.qmp.session import QmpSession


@dataclass
class VmView:
    """One VM over one session: what it is, what it talks through, what is known."""

    session: QmpSession
    cfg: Config
    vm: VmRecord
    out: VmPublisher
    clock: Callable[[], float]  # epoch seconds, for payloads and the forecaster
    version: QemuVersion
    identity: VmIdentity
    qmp_label: str
    losses: EventLosses  # the daemon's count of events that could not be published
    host_vfio: HostVfio  # the VFIO devices the host offers (the hot-plug poll reads it)
    info: VmInfo | None = None  # the facts last read for ``info``
    has_vfio: bool = False  # the last VFIO evaluation found a device
    #: the last VFIO evaluation's blockers (None: none yet, or ``[vfio]`` is off)
    blockers: BlockerState | None = None
    #: the first VFIO evaluation has not ended yet (the forecast waits for it)
    blockers_pending: bool = False
    events_on: bool = False  # capability ``events``: MIGRATION events arrive
    #: set while a migration runs (the poller waits for it)
    migrating: asyncio.Event = field(default_factory=asyncio.Event)
    #: set while the role calls for ``calc-dirty-rate`` (the dirty-rate task waits)
    measurable: asyncio.Event = field(default_factory=asyncio.Event)
    #: the role, the blockers or the measured dirty rate changed (the forecast task
    #: waits for it and republishes when its claim moved)
    claims_changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: a topology event arrived (the VFIO task waits for it)
    topology_changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: what ``info`` showed last: its facts and the role (re-published on a change)
    info_shown: InfoShown | None = None
    settled: RoleVerdict | None = None  # the role the tasks were last told

    @property
    def name(self) -> str:
        return self.vm.name

    @property
    def forecaster(self) -> Forecaster:
        return self.vm.forecaster

    @property
    def migration_role(self) -> Role:
        """A QEMU started with ``-incoming`` is a migration's destination."""
        return "destination" if self.info and self.info.run_state == "inmigrate" else "source"

    @property
    def role(self) -> RoleVerdict:
        """The VM's role now: its run state (as last read) and the migration tracked."""
        current = self.vm.tracker.current
        return role_of(self.info.run_state if self.info else None,
                       current.role if current else None)

    def settle_role(self) -> tuple[RoleVerdict, bool]:
        """The role, and whether it moved since the tasks were last told; tells them
        (``measurable``, ``claims_changed``)."""
        role = self.role
        moved = role != self.settled
        if moved:
            self.settled = role
            (self.measurable.set if measures_dirty_rate(role) else self.measurable.clear)()
            self.claims_changed.set()
        return role, moved

    def measured(self, m: DirtyRateMeasurement, error_bound_rel: float | None) -> None:
        """A dirty-rate measurement for the forecaster; the forecast task is told
        (``claims_changed``), so that one task alone publishes ``forecast``."""
        self.forecaster.measured(m, self.clock(), error_bound_rel)
        self.claims_changed.set()

    def migration_running(self, running: bool) -> None:
        """Tell the waiting tasks whether a migration runs."""
        (self.migrating.set if running else self.migrating.clear)()

    def event_expiry(self) -> int | None:
        """MQTT v5 expiry of non-retained records (events, passes); None = never."""
        return self.cfg.mqtt.event_expiry_s or None

    def dirty_rate_expiry(self) -> int:
        """A rate older than three intervals is stale: let the broker drop it."""
        return max(60, round(3 * self.cfg.dirty_rate.interval_s))
