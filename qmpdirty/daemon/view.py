"""One VM as the tasks of its pipeline share it (shell).

A ``VmView`` is made per QMP session by ``pipeline.VmPipeline``; every task module
(events, liveness, dirty rate, migrations, VFIO, forecasts) reads what it needs from
it and writes back the little the others read (``info``, ``has_vfio``, the three
signals). Must not hold callables into other tasks, and must not do I/O itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from qmpdirty.config import Config
from qmpdirty.daemon.vm import VmPublisher, VmRecord
from qmpdirty.decisions.migration.forecaster import Forecaster
from qmpdirty.decisions.migration.tracker import Role
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.vm import VmIdentity, VmInfo
from qmpdirty.qmp.session import QmpSession


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


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
    info: VmInfo | None = None  # the last ``info`` published
    has_vfio: bool = False  # the last VFIO evaluation found a device
    events_on: bool = False  # capability ``events``: MIGRATION events arrive
    #: set while a migration runs (the poller waits for it) ...
    migrating: asyncio.Event = field(default_factory=asyncio.Event)
    #: ... and its opposite (dirty-rate measurement waits for it)
    idle: asyncio.Event = field(default_factory=_set)
    #: a topology event arrived (the VFIO task waits for it)
    topology_changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.vm.name

    @property
    def forecaster(self) -> Forecaster:
        return self.vm.forecaster

    @property
    def role(self) -> Role:
        """A QEMU started with ``-incoming`` is a migration's destination."""
        return "destination" if self.info and self.info.run_state == "inmigrate" else "source"

    def migration_running(self, running: bool) -> None:
        """Tell the waiting tasks whether a migration runs."""
        (self.migrating.set if running else self.migrating.clear)()
        (self.idle.clear if running else self.idle.set)()

    def event_expiry(self) -> int | None:
        """MQTT v5 expiry of non-retained records (events, passes); None = never."""
        return self.cfg.mqtt.event_expiry_s or None

    def dirty_rate_expiry(self) -> int:
        """A rate older than three intervals is stale: let the broker drop it."""
        return max(60, round(3 * self.cfg.dirty_rate.interval_s))
