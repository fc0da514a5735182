"""Per-VM state that outlives a QMP session, the ports a VM publishes to, and the
publisher that stamps its payloads (shell).

The ``seq`` counter must keep increasing across reconnects within a daemon run, and
the migration tracker must survive a reconnect to report ``lost``; both live in the
VM's ``VmRecord``, keyed by its topic name, until the VM is forgotten
(``daemon.forget``); a VM that comes back then starts above every ``seq`` forgotten.
A topic name stays with the VM that first claimed it (``Context.claim``, with
``SessionOwner.key``) until that VM is forgotten, whatever order VMs whose names
sanitise alike reconnect in.
Everything a VM sends goes through its ``VmPublisher`` to a ``Publisher``
(``telemetry.message``: the MQTT sink, or its ``Tee`` with ``/metrics``; a recorder in
tests), and every hook through its ``fire`` methods: must not
publish or fire hooks any other way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from qmpdirty.config.hooks import PublishedHookKind
from qmpdirty.config.load import Config
from qmpdirty.daemon.hotplug import HostVfio
from qmpdirty.daemon.losses import EventLosses
from qmpdirty.daemon.starts import StartGate
from qmpdirty.decisions.migration.forecaster import Forecaster
from qmpdirty.decisions.migration.tracker import TrackerState
from qmpdirty.facts.vm import QmpEvent, VmIdentity
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.telemetry import render
from qmpdirty.telemetry.message import Publisher
from qmpdirty.telemetry.render import Outgoing, VmStamp
from qmpdirty.telemetry.schema import InfoPayload
from qmpdirty.telemetry.topics import TopicKind, Topics

log = logging.getLogger(__name__)


class Hooks(Protocol):
    """The hook runner (``sinks.hooks.HookRunner``); every method only queues runs, and
    never blocks nor raises."""

    def fire_body(self, kind: PublishedHookKind, vm: str, body: bytes) -> None:
        """Queue the hooks for ``kind`` with ``body`` (the payload as published) on
        their stdin."""

    def fire_online(self, vm: str, info: InfoPayload) -> None:
        """Queue the ``vm-online`` hooks with the VM's ``info`` payload on their stdin."""

    def fire_offline(self, vm: str) -> None:
        """Queue the ``vm-offline`` hooks (their stdin: when, why and the last ``info``)."""

    def fire_qmp(self, vm: str, event: QmpEvent) -> None:
        """Queue the ``qmp:NAME`` hooks ``event`` is due for, with the message as QEMU
        sent it on their stdin."""


@dataclass(frozen=True, eq=False)
class SessionOwner:
    """One QMP session's claim on a VM name (compared by identity)."""

    label: str
    #: where the VM is reached, the same across its restarts: its address in client
    #: mode; None in server mode (every QEMU dials the one socket)
    place: str | None = None

    def key(self, identity: VmIdentity | None) -> str | None:
        """Which VM this is, for ``Context.claim``: QEMU's UUID, else its ``-name`` as
        QEMU gives it (``web 1`` and ``web/1`` both sanitise to ``web_1``) with the
        address, else the address; None when nothing stable is known."""
        if identity is not None and identity.uuid:
            return f"uuid:{identity.uuid}"
        if identity is not None and identity.name:
            return f"name:{identity.name}" + (f"@{self.place}" if self.place else "")
        return f"qmp:{self.place}" if self.place else None


@dataclass
class VmRecord:
    """What the daemon remembers about one VM (by topic name) for its whole run."""

    name: str
    forecaster: Forecaster  # kept across sessions: last bandwidth, last measurement
    #: who the name belongs to (``Context.claim``); None: nobody yet (adopted at start)
    key: str | None = None
    seq: int = 0
    state: render.VmStatus = "offline"
    error: str | None = None
    owner: SessionOwner | None = None
    tracker: TrackerState = field(default_factory=TrackerState)
    discovery_sent: bool = False
    #: the QEMU version and machine its Home Assistant device was announced with
    discovery_device: tuple[str, str | None] | None = None
    #: when its last session ended (monotonic seconds); None while one is up
    released_at: float | None = None
    #: whether the broker may hold a ``dirty_rate`` of this VM (None: not known, e.g.
    #: one from an earlier daemon run); cleared when the guest stops running
    dirty_rate_retained: bool | None = None

    @property
    def online(self) -> bool:
        """A QMP session is up (``unresponsive`` counts: the session is kept)."""
        return self.state in ("online", "unresponsive")


@dataclass
class Context:
    """What every VM shares: config, publisher, topics, policy, hooks, clock, VM table."""

    cfg: Config
    sink: Publisher
    topics: Topics
    policy: CommandPolicy
    hooks: Hooks | None = None
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic  # for how long a VM has been gone
    vms: dict[str, VmRecord] = field(default_factory=dict)
    #: the highest ``seq`` of a VM forgotten in this run: a new record starts above it
    seq_floor: int = 0
    #: QMP events that could not be published, by VM (the ``daemon`` topic)
    losses: EventLosses = field(default_factory=EventLosses)
    #: the host's VFIO devices, kept current by ``daemon.hotplug`` (with ``[vfio]``)
    host_vfio: HostVfio = field(default_factory=HostVfio)
    #: how many sessions may be starting at once (``daemon.starts``)
    starts: StartGate = field(default_factory=StartGate)
    #: the highest ``.N`` given to each name that clashed (``claim``)
    _suffixes: dict[str, int] = field(default_factory=dict)

    def claim(self, name: str, owner: SessionOwner, key: str | None = None) -> VmRecord:
        """The record for ``name``, owned by ``owner``; a clash gets a ``.N`` suffix.

        Two live sessions never publish under one name (two QEMUs with the same
        ``-name``, or one QEMU reached twice): the second is logged and renamed. ``key``
        says which VM this is (``SessionOwner.key``): a name once claimed with a key goes
        to that key only, so two VMs whose names sanitise alike keep ``<name>`` and
        ``<name>.2`` however they reconnect or restart, until forgotten.
        """
        free: str | None = None
        for candidate in self._family(name):
            vm = self.vms.get(candidate)
            if vm is None or vm.owner not in (None, owner):
                free = free or (candidate if vm is None else None)
                continue
            if key is not None and vm.key == key:
                return self._take(vm, owner, key)  # this VM's own name
            if free is None and vm.key in (None, key):
                free = candidate
        taken = free or self._next_in(name)
        if taken not in self.vms and taken != name:
            log.error("two QMP sessions call themselves %r; publishing the second as %r",
                      name, taken)
        return self._take(self.vms.get(taken) or self._record(taken), owner, key)

    def _family(self, name: str) -> list[str]:
        """``name`` and every ``name.N`` given out in this run, in order."""
        return [name, *(f"{name}.{n}" for n in range(2, self._suffixes.get(name, 1) + 1))]

    def _next_in(self, name: str) -> str:
        n = self._suffixes[name] = self._suffixes.get(name, 1) + 1
        return f"{name}.{n}"

    def _take(self, vm: VmRecord, owner: SessionOwner, key: str | None) -> VmRecord:
        vm.owner, vm.released_at = owner, None
        vm.key = vm.key or key
        return vm

    def release(self, vm: VmRecord, owner: SessionOwner) -> None:
        """The session ended: the name is free for the next one, and the VM is gone
        from now on (``daemon.forget`` counts from here)."""
        if vm.owner is owner:
            vm.owner = None
            vm.released_at = self.monotonic()

    def adopt(self, name: str, state: render.VmStatus) -> VmRecord:
        """A record for a VM known only from the broker (no session): gone since now."""
        vm = self._record(name)
        vm.state, vm.released_at = state, self.monotonic()
        return vm

    def forget(self, vm: VmRecord) -> None:
        """Drop ``vm``'s record; its ``seq`` raises the floor of any new record."""
        if self.vms.get(vm.name) is vm:
            del self.vms[vm.name]
            self.seq_floor = max(self.seq_floor, vm.seq)

    def _record(self, name: str) -> VmRecord:
        vm = self.vms[name] = VmRecord(name, Forecaster(self.cfg.forecast), seq=self.seq_floor)
        return vm


class VmPublisher:
    """Stamps one VM's payloads (``seq``, ``ts``), sends them, fires its hooks."""

    def __init__(self, ctx: Context, vm: VmRecord) -> None:
        self._ctx = ctx
        self.vm = vm

    def stamp(self) -> VmStamp:
        """The next ``seq`` and the current time for one payload."""
        self.vm.seq += 1
        return VmStamp(self._ctx.topics, self.vm.name, self.vm.seq, self._ctx.clock())

    def publish(self, msg: Outgoing) -> None:
        self._ctx.sink.publish(msg)

    def fire(self, kind: PublishedHookKind, msg: Outgoing) -> None:
        """Run the hooks for ``kind`` with ``msg``'s payload, as published, on stdin
        (``{}`` for one that is not JSON); never waits."""
        if self._ctx.hooks is not None:
            body = msg.payload if msg.is_json else b"{}"
            self._ctx.hooks.fire_body(kind, self.vm.name, body)

    def fire_online(self, info: InfoPayload) -> None:
        """Run the ``vm-online`` hooks with the ``info`` payload just published; never
        waits."""
        if self._ctx.hooks is not None:
            self._ctx.hooks.fire_online(self.vm.name, info)

    def fire_offline(self) -> None:
        """Run the ``vm-offline`` hooks; never waits."""
        if self._ctx.hooks is not None:
            self._ctx.hooks.fire_offline(self.vm.name)

    def fire_qmp(self, event: QmpEvent) -> None:
        """Run the ``qmp:NAME`` hooks due for ``event`` (QEMU's message on stdin); never
        waits."""
        if self._ctx.hooks is not None:
            self._ctx.hooks.fire_qmp(self.vm.name, event)

    def clear(self, kind: TopicKind) -> None:
        """Remove the VM's retained ``kind`` from the broker (an empty retained message)."""
        self.publish(render.cleared(self._ctx.topics, self.vm.name, kind))

    def state(self, state: render.VmStatus) -> None:
        """``vm/<vm>/status``: ``online`` (an ``error`` left behind is cleared),
        ``offline``, ``unresponsive`` or ``error``."""
        was = self.vm.state
        self.vm.state = state
        self.publish(render.vm_state(self._ctx.topics, self.vm.name, state))
        if was == "error" and state == "online":
            self.publish(render.cleared(self._ctx.topics, self.vm.name, TopicKind.ERROR))

    def error(self, reason: str, qmp: str) -> None:
        """The peer broke the protocol: ``status`` ``error`` and the reason (published
        again only when the reason changes: a broken peer is retried with backoff)."""
        if self.vm.state == "error" and self.vm.error == reason:
            return
        self.vm.error = reason
        self.publish(render.vm_error(self.stamp(), reason, qmp))
        self.state("error")
