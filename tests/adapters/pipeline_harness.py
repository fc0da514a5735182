"""A VM pipeline without QEMU: a scripted QEMU 10.0.2 and the daemon's ports recorded.

``ScriptedVm`` answers what the pipeline asks with QEMU 10.0.2's recorded replies
(tests/data/qemu-10.0.2), which a test may change on the way; ``RecordingPublisher``
and ``RecordingHooks`` are test doubles of ``telemetry.message.Publisher`` and
``daemon.vm.Hooks``.
``running`` runs ``fleet.run_session`` - identify, start, the pipeline's TaskGroup, the
session's end - against them with short intervals.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qmpdirty.config.address import QmpAddress
from qmpdirty.config.hooks import HookKind, PublishedHookKind
from qmpdirty.config.load import Config
from qmpdirty.daemon import fleet
from qmpdirty.daemon.app import policy_from
from qmpdirty.daemon.vm import Context
from qmpdirty.facts.vm import QmpEvent
from qmpdirty.qmp.session import QmpSession
from qmpdirty.telemetry.render import Outgoing
from qmpdirty.telemetry.schema import InfoPayload
from qmpdirty.telemetry.topics import Topics
from tests.adapters.scripted_qmp import QmpError, ScriptedQmp, Silence

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2"
VM = "vm/vm1"
CLOCK_TS = 1_800_000_000.0  # the daemon's clock at the start of each test (it runs on)
VRB = "The vvfat (rw) format used by node '#block061' does not support live migration"
T = TypeVar("T")


@dataclass
class RecordingPublisher:
    """Every message, in publication order; ``fail_on`` makes ``publish`` raise for
    topics ending so (a bug in the pipeline, for the firewall's tests)."""

    prefix: str
    messages: list[Outgoing] = field(default_factory=list)
    fail_on: str | None = None

    def publish(self, msg: Outgoing) -> None:
        if self.fail_on is not None and msg.topic.endswith(self.fail_on):
            raise RuntimeError(f"publishing {msg.topic} failed")
        self.messages.append(msg)

    def on(self, suffix: str) -> list[Outgoing]:
        """Messages on ``<prefix>/<suffix>``, in order."""
        return [m for m in self.messages if m.topic == f"{self.prefix}/{suffix}"]

    def json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(suffix)]

    def texts(self, suffix: str) -> list[str]:
        return [m.payload.decode() for m in self.on(suffix)]

    def topics(self) -> list[str]:
        """Every topic, relative to the prefix, in publication order."""
        return [m.topic.removeprefix(f"{self.prefix}/") for m in self.messages]

    async def wait_for(self, found: Callable[[], T | None], what: str,
                       timeout_s: float = 5.0) -> T:
        """Poll ``found`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while not (value := found()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s}s; published: "
                                     f"{self.topics()}")
            await asyncio.sleep(0.01)
        return value


@dataclass
class RecordingHooks:
    """Every hook the daemon fired: (kind, vm, the payload handed over as JSON data;
    ``{}`` for ``vm-offline``, whose stdin the runner builds)."""

    fired: list[tuple[HookKind, str, dict[str, object]]] = field(default_factory=list)
    #: every QMP event handed to the runner for its ``qmp:NAME`` hooks: (vm, event)
    qmp: list[tuple[str, QmpEvent]] = field(default_factory=list)

    def fire_body(self, kind: PublishedHookKind, vm: str, body: bytes) -> None:
        self.fired.append((kind, vm, json.loads(body)))

    def fire_online(self, vm: str, info: InfoPayload) -> None:
        self.fired.append(("vm-online", vm, info.model_dump(mode="json", by_alias=True)))

    def fire_offline(self, vm: str) -> None:
        self.fired.append(("vm-offline", vm, {}))

    def fire_qmp(self, vm: str, event: QmpEvent) -> None:
        self.qmp.append((vm, event))

    def of(self, kind: HookKind) -> list[dict[str, object]]:
        return [payload for k, _vm, payload in self.fired if k == kind]


def recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


@dataclass
class ScriptedVm:
    """A QEMU 10.0.2 (TCG, 128 MiB, one vCPU) whose answers a test can change."""

    migrate: object = field(default_factory=lambda: recorded("query-migrate.none"))
    dirty_rate: object = field(
        default_factory=lambda: recorded("query-dirty-rate.page-sampling.measured"))
    peripherals: list[dict[str, str]] = field(default_factory=lambda: [
        {"name": "nic0", "type": "child<virtio-net-pci>"}])
    name_reply: object = field(default_factory=lambda: {"name": "vm1"})
    status_reply: object = field(default_factory=lambda: recorded("query-status.running"))
    uuid_reply: object = field(default_factory=lambda: recorded("query-uuid.tcg"))
    frozen: bool = False  # query-status gets no answer (a SIGSTOPped QEMU)
    #: query-status is answered once this is set (a start that waits behind other VMs)
    status_gate: asyncio.Event | None = None

    def handlers(self) -> dict[str, Any]:
        fixed = {
            "query-version": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""},
            "query-name": self.name_reply, "query-uuid": self.uuid_reply,
            "query-migrate-capabilities": recorded("query-migrate-capabilities.events-on"),
            "query-migrate-parameters": {"downtime-limit": 300, "max-bandwidth": 134217728,
                                         "avail-switchover-bandwidth": 0},
            "query-kvm": recorded("query-kvm.tcg"),
            "query-cpus-fast": recorded("query-cpus-fast.tcg"),
            "query-memory-size-summary": recorded("query-memory-size-summary.tcg"),
            "calc-dirty-rate": {},
        }
        handlers: dict[str, Any] = {name: (lambda _a, r=reply: r) for name, reply in fixed.items()}
        handlers.update({
            "query-status": lambda _a: self._status(),
            "query-migrate": lambda _a: self.migrate,
            "query-dirty-rate": lambda _a: self.dirty_rate,
            "qom-get": self._qom_get,
            "qom-list": lambda a: self.peripherals if a["path"] == "/machine/peripheral" else [],
        })
        return handlers

    def _status(self) -> object:
        if self.frozen:
            return Silence()
        if self.status_gate is None or self.status_gate.is_set():
            return self.status_reply
        return self._held_status(self.status_gate)

    async def _held_status(self, gate: asyncio.Event) -> object:
        await gate.wait()
        return self.status_reply

    @staticmethod
    def _qom_get(arguments: dict[str, Any]) -> object:
        if arguments == {"path": "/machine", "property": "type"}:
            return recorded("qom-get.machine-type")
        return QmpError("GenericError", f"Property 'pc-i440fx-10.0-machine.{arguments}' "
                                        "not found")


def config(**sections: dict[str, Any]) -> Config:
    """Short intervals; dirty rate and VFIO off unless a test turns them on."""
    base: dict[str, dict[str, Any]] = {
        "host": {"name": "h1"},
        "qmp": {"command_timeout_s": 0.5, "liveness_interval_s": 30.0},
        "dirty_rate": {"enabled": False, "interval_s": 0.2, "window_s": 0.05},
        "migration": {"poll_interval_s": 0.05, "poll_interval_fast_s": 0.05},
        "vfio": {"enabled": False, "refresh_interval_s": 30.0, "debounce_s": 0.0,
                 "hotplug_poll_s": 0.0},
        "forecast": {"publish_interval_s": 600.0},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Config.model_validate(base)


@dataclass
class Running:
    server: ScriptedQmp
    vm: ScriptedVm
    out: RecordingPublisher
    hooks: RecordingHooks
    ctx: Context
    label: str
    task: asyncio.Task[str | None]

    def sent(self, command: str) -> list[dict[str, Any]]:
        """The arguments of every ``command`` the pipeline sent, in order."""
        return [c.get("arguments", {}) for c in self.server.commands
                if c.get("execute") == command]

    async def hang_up(self) -> str | None:
        """QEMU goes away; what ``run_session`` returned."""
        await self.server.close()
        return await asyncio.wait_for(self.task, 5)


@asynccontextmanager
async def running(cfg: Config, vm: ScriptedVm | None = None,
                  out: RecordingPublisher | None = None) -> AsyncIterator[Running]:
    vm = vm or ScriptedVm()
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "qmp.sock"
    server = await ScriptedQmp(path, replies=vm.handlers()).start()
    topics = Topics.create("qmpdirty", "h1")
    out = out or RecordingPublisher("qmpdirty/h1")
    hooks = RecordingHooks()
    began = time.monotonic()
    ctx = Context(cfg, out, topics, policy_from(cfg), hooks,
                  clock=lambda: CLOCK_TS + time.monotonic() - began)
    session = await QmpSession.open(
        QmpAddress("unix", path), policy=ctx.policy, command_timeout_s=cfg.qmp.command_timeout_s,
        connect_timeout_s=2.0, event_queue_size=100, label=f"unix:{path}")
    label = f"unix:{path}"
    task = asyncio.create_task(fleet.run_session(ctx, session, label, "fallback",
                                                 session.peer_pid))
    try:
        yield Running(server, vm, out, hooks, ctx, label, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()


async def online(r: Running) -> None:
    await r.out.wait_for(lambda: "online" in r.out.texts(f"{VM}/status"), "online")


def status(run_state: str) -> dict[str, object]:
    """A ``query-status`` reply in QEMU's shape."""
    return {"running": run_state == "running", "status": run_state}
