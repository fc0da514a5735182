"""Per-VM state that outlives a QMP session, and the publisher that stamps payloads (shell).

The ``seq`` counter must keep increasing across reconnects within a daemon run, and
the migration tracker must survive a reconnect to report ``lost``; both live here,
keyed by the VM's topic name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qmpdirty.config import Config, ForecastConfig
from qmpdirty.decisions.migration.forecaster import Forecaster
from qmpdirty.decisions.migration.tracker import TrackerState
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.sinks.hooks import HookRunner
from qmpdirty.sinks.mqtt import MqttSink
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import Outgoing, VmStamp
from qmpdirty.telemetry.topics import TopicKind, Topics

log = logging.getLogger(__name__)


@dataclass
class VmState:
    """What the daemon remembers about one VM (by topic name) for its whole run."""

    name: str
    seq: int = 0
    online: bool = False
    state: str = "offline"
    error: str | None = None
    owner: object | None = None
    tracker: TrackerState = field(default_factory=TrackerState)
    discovery_sent: bool = False
    _forecaster: Forecaster | None = None

    def forecaster(self, cfg: ForecastConfig) -> Forecaster:
        """The VM's forecasting state, kept across sessions (last bandwidth, measurement)."""
        if self._forecaster is None:
            self._forecaster = Forecaster(cfg)
        return self._forecaster


@dataclass
class Context:
    """What every VM task shares: config, sink, topics, policy, clock and VM table."""

    cfg: Config
    sink: MqttSink
    topics: Topics
    policy: CommandPolicy
    hooks: HookRunner | None = None
    clock: Callable[[], float] = time.time
    vms: dict[str, VmState] = field(default_factory=dict)

    def claim(self, name: str, owner: object) -> VmState:
        """The VM state for ``name``, owned by ``owner``; a clash gets a ``.N`` suffix.

        Two live sessions never publish under one name (two QEMUs with the same
        ``-name``, or one QEMU reached twice): the second is logged and renamed.
        """
        candidate, n = name, 1
        while (vm := self.vms.get(candidate)) is not None and vm.owner not in (None, owner):
            n += 1
            candidate = f"{name}.{n}"
        if candidate != name:
            log.error("two QMP sessions call themselves %r; publishing the second as %r",
                      name, candidate)
        vm = self.vms.setdefault(candidate, VmState(candidate))
        vm.owner = owner
        return vm

    def release(self, vm: VmState, owner: object) -> None:
        """The session ended: the name is free for the next one."""
        if vm.owner is owner:
            vm.owner = None


class VmPublisher:
    """Stamps and sends one VM's payloads (``seq``, ``ts``) through the sink."""

    def __init__(self, ctx: Context, vm: VmState) -> None:
        self.ctx = ctx
        self.vm = vm

    def stamp(self) -> VmStamp:
        """The next ``seq`` and the current time for one payload."""
        self.vm.seq += 1
        return VmStamp(self.ctx.topics, self.vm.name, self.vm.seq, self.ctx.clock())

    def send(self, msg: Outgoing) -> None:
        self.ctx.sink.publish(msg)

    def fire(self, kind: str, msg: Outgoing | None = None) -> None:
        """Run the hooks for ``kind`` with ``msg``'s JSON payload on stdin (never waits)."""
        if self.ctx.hooks is not None:
            payload = json.loads(msg.payload) if msg is not None and msg.is_json else {}
            self.ctx.hooks.fire(kind, self.vm.name, payload)

    def status(self, online: bool) -> None:
        """``vm/<vm>/status``: ``online`` (an ``error`` left behind is cleared) / ``offline``."""
        self.state("online" if online else "offline")

    def state(self, state: render.VmStatus) -> None:
        """``vm/<vm>/status`` with any of its four values."""
        was = self.vm.state
        self.vm.online = state in ("online", "unresponsive")
        self.vm.state = state
        self.send(render.vm_state(self.ctx.topics, self.vm.name, state))
        if was == "error" and state == "online":
            self.send(render.cleared(self.ctx.topics, self.vm.name, TopicKind.ERROR))

    def error(self, reason: str, qmp: str) -> None:
        """The peer broke the protocol: ``status`` ``error`` and the reason (published
        again only when the reason changes: a broken peer is retried with backoff)."""
        if self.vm.state == "error" and self.vm.error == reason:
            return
        self.vm.error = reason
        self.send(render.vm_error(self.stamp(), reason, qmp))
        self.state("error")
