"""A fleet of fake QEMUs in one process, for the scale benchmarks (not a test double).

``python -m bench.fakeqmp --count 1000 --dir DIR`` listens on ``DIR/vm-<i>.qmp``
(and ``DIR/mon2/vm-<i>.qmp`` with ``--monitors 2``: QEMU broadcasts events to every
monitor) and prints ``READY <count>`` once every socket accepts. Each VM answers
every command the daemon sends with the replies a real QEMU 10.0.2 gave
(``bench/data/qemu-10.0.2.json``, recorded by ``bench/record_qmp.py``); only the name
(``vm-<i>``), uuid, run state, capability ``events``, migration and dirty-rate state
are per VM. Events carry QEMU's ``timestamp`` {seconds, microseconds}, taken just
before the write. Background events (RTC_CHANGE, NIC_RX_FILTER_CHANGED, STOP+RESUME)
arrive as a Poisson stream of ``--event-rate`` per second over the whole fleet, and
``--migrating K`` VMs run full migrations (``setup``, passes, ``active``, STOP,
``device``, ``completed``, then RESUME) one after the other, for ever.

Control channel ``DIR/control.sock``: one JSON request per line, one JSON answer per
line (``fakectl.FleetControl`` is the client). Ops: ``stats``; ``emit`` {vm, event,
data} -> {ts}; ``migrate`` {vm, passes, pass_s}; ``transitions`` {vm} -> [[status,
ts]...] of its migrations; ``rate`` {per_s} sets the background rate. Protocol
handling is ``asyncio.Protocol`` callbacks only: no task per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

DATA = Path(__file__).resolve().parent / "data" / "qemu-10.0.2.json"
ALREADY_MEASURING = "the dirty rate is already being measured."
LPC_RTC = "/machine/unattached/device[2]/rtc"  # q35: the ICH9 LPC's ``rtc`` child


def _enc(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _error(cls: str, desc: str) -> str:
    return '"error":' + _enc({"class": cls, "desc": desc})


class Recording:
    """The recorded replies, each pre-encoded as ``"return":...`` (or ``"error":...``)."""

    def __init__(self, path: Path = DATA) -> None:
        doc = json.loads(path.read_text())
        self.replies: dict[str, dict[str, Any]] = doc["replies"]
        self.encoded = {label: self._fragment(reply) for label, reply in self.replies.items()}
        self.snapshots: list[dict[str, Any]] = doc["migration_snapshots"]
        self.version = self.replies["query-version"]["return"]

    @staticmethod
    def _fragment(reply: dict[str, Any]) -> str:
        if "error" in reply:
            return '"error":' + _enc(reply["error"])
        return '"return":' + _enc(reply["return"])

    def greeting(self) -> bytes:
        return _enc({"QMP": {"version": self.version, "capabilities": ["oob"]}}).encode() + b"\r\n"

    def active_snapshot(self, progress: float, passes: int, elapsed_ms: int) -> dict[str, Any]:
        """A recorded ``active`` reply for ``progress`` in [0, 1], with live counters."""
        active = [s for s in self.snapshots if s.get("status") == "active"]
        snap: dict[str, Any] = json.loads(
            _enc(active[min(len(active) - 1, int(progress * len(active)))]))
        snap["total-time"] = elapsed_ms
        snap["ram"]["dirty-sync-count"] = passes
        return snap


class FakeVm:
    """One fake QEMU: its state, its connected monitors, and its answers."""

    def __init__(self, index: int, rec: Recording) -> None:
        self.rec = rec
        self.name = f"vm-{index}"
        self.clients: set[asyncio.Transport] = set()
        self.run_state = "running"
        self.events_on = False
        self.migration: dict[str, Any] | None = None
        self.transitions: list[tuple[str, float]] = []
        self.dirty: tuple[float, dict[str, Any]] | None = None  # (ends_at, reply)
        self.base_rate_mib = random.choice((4, 8, 16, 32, 64))
        self.identity = {
            "query-name": '"return":' + _enc({"name": self.name}),
            "query-uuid": '"return":' + _enc({"UUID": str(uuid.UUID(int=index + 1))}),
        }

    def answer(self, command: str, args: dict[str, Any]) -> str:
        """The reply's ``"return":...`` or ``"error":...`` member for one command."""
        if command in self.identity:
            return self.identity[command]
        if command == "query-status":
            return self.rec.encoded[f"query-status:{self.run_state}"]
        if command == "query-migrate-capabilities":
            return self.rec.encoded["query-migrate-capabilities" +
                                    (":events-on" if self.events_on else "")]
        if command == "migrate-set-capabilities":
            for cap in args.get("capabilities", []):
                if cap.get("capability") == "events":
                    self.events_on = bool(cap.get("state"))
            return '"return":{}'
        if command == "query-migrate":
            return '"return":' + _enc(self.migration) if self.migration is not None \
                else self.rec.encoded["query-migrate"]
        if command in ("calc-dirty-rate", "query-dirty-rate"):
            return self._dirty_rate(command, args)
        label = {"qom-get": f"qom-get:{args.get('path')}:{args.get('property')}",
                 "qom-list": f"qom-list:{args.get('path')}",
                 "human-monitor-command": "mtree" if args.get("command-line") ==
                 "info mtree -f -o" else "hmp"}.get(command, command)
        if label in self.rec.encoded:
            return self.rec.encoded[label]
        if command == "qom-list":
            return _error("DeviceNotFound", f"Device '{args.get('path')}' not found")
        if command == "qom-get":
            return _error("GenericError", f"Property '{args.get('property')}' not found")
        if command == "qmp_capabilities":
            return '"return":{}'
        return _error("CommandNotFound", f"The command {command} has not been found")

    def _dirty_rate(self, command: str, args: dict[str, Any]) -> str:
        now = time.time()
        if command == "calc-dirty-rate":
            if self.dirty is not None and now < self.dirty[0]:
                return _error("GenericError", ALREADY_MEASURING)
            unit_ms = args.get("calc-time-unit") == "millisecond"
            calc = int(args.get("calc-time", 1))
            reply = dict(self.rec.replies["query-dirty-rate:measured"]["return"])
            reply.update({"calc-time": calc, "start-time": int(now), "mode": args.get("mode"),
                          "sample-pages": args.get("sample-pages", 0),
                          "dirty-rate": max(1, round(self.base_rate_mib * random.uniform(
                              0.8, 1.2)))})
            self.dirty = (now + (calc / 1000 if unit_ms else calc), reply)
            return '"return":{}'
        if self.dirty is None:
            return self.rec.encoded["query-dirty-rate"]
        ends_at, reply = self.dirty
        if now < ends_at:
            return '"return":' + _enc({k: v for k, v in reply.items() if k != "dirty-rate"}
                                      | {"status": "measuring"})
        return '"return":' + _enc(reply)

    def emit(self, event: str, data: dict[str, Any] | None = None) -> float:
        """Send ``event`` to every connected monitor; returns its QEMU timestamp."""
        now = time.time()
        seconds, micro = int(now), int((now - int(now)) * 1e6)
        msg: dict[str, Any] = {"event": event}
        if data is not None:
            msg["data"] = data
        msg["timestamp"] = {"seconds": seconds, "microseconds": micro}
        wire = _enc(msg).encode() + b"\r\n"
        for transport in list(self.clients):
            transport.write(wire)
        return seconds + micro / 1e6


class Monitor(asyncio.Protocol):
    """One QMP connection to a fake VM: greeting, then a JSON stream of commands."""

    def __init__(self, vm: FakeVm, fleet: Fleet) -> None:
        self.vm = vm
        self.fleet = fleet
        self.buf = ""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.vm.clients.add(self.transport)
        self.transport.write(self.vm.rec.greeting())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.vm.clients.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data.decode()
        decoder, pos, end = self.fleet.decoder, 0, len(self.buf)
        while True:
            while pos < end and self.buf[pos] in " \t\r\n":
                pos += 1
            if pos == end:
                break
            try:
                msg, pos = decoder.raw_decode(self.buf, pos)
            except json.JSONDecodeError:
                break
            self._reply(msg)
        self.buf = self.buf[pos:]

    def _reply(self, msg: dict[str, Any]) -> None:
        command = str(msg.get("execute"))
        self.fleet.commands[command] += 1
        body = self.vm.answer(command, msg.get("arguments") or {})
        tail = ',"id":' + _enc(msg["id"]) + "}" if "id" in msg else "}"
        assert self.transport is not None
        self.transport.write(("{" + body + tail + "\r\n").encode())


class Fleet:
    """Every fake VM, the background event stream, the migrations, the control socket."""

    def __init__(self, count: int, directory: Path, monitors: int) -> None:
        self.rec = Recording()
        self.vms = [FakeVm(i, self.rec) for i in range(count)]
        self.directory = directory
        self.monitors = monitors
        self.decoder = json.JSONDecoder()
        self.commands: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.event_rate = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.AbstractServer] = []  # uvloop closes a collected server

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        dirs = [self.directory] + [self.directory / f"mon{n}" for n in range(2, self.monitors + 1)]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
            for vm in self.vms:
                self._servers.append(await loop.create_unix_server(
                    lambda vm=vm: Monitor(vm, self),  # type: ignore[misc]
                    str(d / f"{vm.name}.qmp"), backlog=128))
        self._servers.append(await asyncio.start_unix_server(
            self._control, str(self.directory / "control.sock")))

    def emit(self, vm: FakeVm, event: str, data: dict[str, Any] | None = None) -> float:
        """Emit (counted); MIGRATION events only with capability ``events``, as QEMU."""
        if event.startswith("MIGRATION") and not vm.events_on:
            return time.time()
        self.events[event] += 1
        return vm.emit(event, data)

    async def background(self) -> None:
        """A Poisson stream of ordinary events over the VMs that have a monitor."""
        while True:
            if self.event_rate <= 0:
                await asyncio.sleep(0.2)
                continue
            await asyncio.sleep(random.expovariate(self.event_rate))
            vm = random.choice(self.vms)
            if not vm.clients:
                continue
            kind = random.random()
            if kind < 0.4:
                self.emit(vm, "RTC_CHANGE", {"offset": random.randint(-5, 5),
                                             "qom-path": LPC_RTC})
            elif kind < 0.7:
                self.emit(vm, "NIC_RX_FILTER_CHANGED",
                          {"name": "net0", "path": "/machine/peripheral/net0/virtio-backend"})
            elif vm.run_state == "running" and vm.migration is None:
                vm.run_state = "paused"
                self.emit(vm, "STOP")
                asyncio.get_running_loop().call_later(random.uniform(0.05, 0.3), self._resume, vm)

    def _resume(self, vm: FakeVm) -> None:
        vm.run_state = "running"
        self.emit(vm, "RESUME")

    async def migrate(self, vm: FakeVm, passes: int = 3, pass_s: float = 1.0) -> None:
        """QEMU 10.0's source sequence (runtime-notes), then ``cont`` after 1 s."""
        started = time.time()

        def status(name: str, progress: float, npass: int) -> None:
            snap = {"status": "setup"} if name == "setup" else self.rec.active_snapshot(
                progress, npass, int((time.time() - started) * 1000))
            vm.migration = snap | {"status": name}
            vm.transitions.append((name, self.emit(vm, "MIGRATION", {"status": name})))

        status("setup", 0.0, 0)
        await asyncio.sleep(0.005)
        self.emit(vm, "MIGRATION_PASS", {"pass": 1})
        status("active", 0.0, 1)
        for n in range(2, passes + 1):
            await asyncio.sleep(pass_s)
            vm.migration = self.rec.active_snapshot(n / (passes + 1), n, int(
                (time.time() - started) * 1000))
            self.emit(vm, "MIGRATION_PASS", {"pass": n})
        await asyncio.sleep(pass_s)
        vm.run_state = "paused"
        self.emit(vm, "STOP")
        status("device", 1.0, passes)
        self.emit(vm, "MIGRATION_PASS", {"pass": passes + 1})
        await asyncio.sleep(0.025)
        vm.run_state = "postmigrate"
        done = [s for s in self.rec.snapshots if s.get("status") == "completed"][-1]
        vm.migration = done
        vm.transitions.append(("completed", self.emit(vm, "MIGRATION", {"status": "completed"})))
        await asyncio.sleep(1.0)
        self._resume(vm)

    async def migrating(self, count: int, rest_s: float) -> None:
        """``count`` VMs migrate in turn, for ever (only those with a monitor)."""
        while count:
            for vm in self.vms[:count]:
                if vm.clients and vm.events_on:
                    await self.migrate(vm)
                await asyncio.sleep(rest_s)
            await asyncio.sleep(0.1)

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                answer = self._handle(json.loads(line))
            except (KeyError, ValueError, IndexError) as exc:
                answer = {"error": str(exc)}
            writer.write(_enc(answer).encode() + b"\n")
            await writer.drain()
        writer.close()

    def _handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req["op"]
        if op == "stats":
            return {"vms": len(self.vms), "connected": sum(1 for v in self.vms if v.clients),
                    "events_on": sum(1 for v in self.vms if v.events_on),
                    "commands": dict(self.commands), "events": dict(self.events)}
        if op == "rate":
            self.event_rate = float(req["per_s"])
            return {"ok": True}
        vm = self.vms[int(req["vm"])]
        if op == "emit":
            return {"ts": self.emit(vm, str(req["event"]), req.get("data"))}
        if op == "migrate":
            task = asyncio.get_running_loop().create_task(
                self.migrate(vm, int(req.get("passes", 3)), float(req.get("pass_s", 1.0))))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return {"ok": True}
        if op == "transitions":
            return {"transitions": vm.transitions}
        raise ValueError(f"unknown op {op!r}")


def raise_open_files(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``needed`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


async def serve(args: argparse.Namespace) -> None:
    fleet = Fleet(args.count, args.dir, args.monitors)
    fleet.event_rate = args.event_rate
    await fleet.listen()
    print(f"READY {args.count}", flush=True)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fleet.background(), name="background-events")
        tg.create_task(fleet.migrating(args.migrating, args.rest_s), name="migrations")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fakeqmp", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--monitors", type=int, default=1, choices=(1, 2))
    p.add_argument("--event-rate", type=float, default=0.0, help="events/s, whole fleet")
    p.add_argument("--migrating", type=int, default=0, help="VMs that migrate in turn")
    p.add_argument("--rest-s", type=float, default=5.0, help="pause between migrations")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = p.parse_args(argv)
    raise_open_files(args.count * (args.monitors * 2 + 1) + 64)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
