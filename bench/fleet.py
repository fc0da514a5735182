"""A fleet of fake QEMUs in one process, for the scale benchmarks (not a test double).

``python -m bench.fleet --count 1000 --dir DIR`` listens on ``DIR/vm-<i>.qmp``
(and ``DIR/mon2/vm-<i>.qmp`` with ``--monitors 2``: QEMU broadcasts events to every
monitor) and prints ``READY <count>`` once every socket accepts. Each VM is a
``RecordedVm`` (``qmpdirty/demo/lab/recorded.py``): the lab's one fake QMP server
answering every command the daemon sends with the replies a real QEMU 10.0.2 gave;
only the name (``vm-<i>``), uuid, run state, capability ``events``, migration and
dirty-rate state are per VM. Events carry QEMU's ``timestamp`` {seconds,
microseconds}, taken just before the write. Background events (RTC_CHANGE,
NIC_RX_FILTER_CHANGED, STOP+RESUME) arrive as a Poisson stream of ``--event-rate``
per second over the whole fleet, and ``--migrating K`` VMs run full migrations
(``setup``, passes, ``active``, STOP, ``device``, ``completed``, then RESUME) one after
the other, for ever.

Control channel ``DIR/control.sock``: one JSON request per line, one JSON answer per
line (``fakectl.FleetControl`` is the client). Ops: ``stats``; ``emit`` {vm, event,
data} -> {ts}; ``migrate`` {vm, passes, pass_s}; ``transitions`` {vm} -> [[status,
ts]...] of its migrations; ``rate`` {per_s} sets the background rate. QMP handling is
``asyncio.Protocol`` callbacks only (``fakeqmp``): no task per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.recorded import RecordedVm, Recording

LPC_RTC = "/machine/unattached/device[2]/rtc"  # q35: the ICH9 LPC's ``rtc`` child


class Fleet:
    """Every fake VM, the background event stream, the migrations, the control socket."""

    def __init__(self, count: int, directory: Path, monitors: int) -> None:
        self.rec = Recording()
        self.commands: Counter[str] = Counter()
        self.vms = [RecordedVm(i, self.rec, self.commands) for i in range(count)]
        self.directory = directory
        self.monitors = monitors
        self.events: Counter[str] = Counter()
        self.event_rate = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.AbstractServer] = []  # uvloop closes a collected server

    async def listen(self) -> None:
        dirs = [self.directory] + [self.directory / f"mon{n}" for n in range(2, self.monitors + 1)]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
            for vm in self.vms:
                await vm.qmp.listen(d / f"{vm.name}.qmp", backlog=128)
        self._servers.append(await asyncio.start_unix_server(
            self._control, str(self.directory / "control.sock")))

    def emit(self, vm: RecordedVm, event: str, data: dict[str, Any] | None = None) -> float:
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

    def _resume(self, vm: RecordedVm) -> None:
        vm.run_state = "running"
        self.emit(vm, "RESUME")

    async def migrate(self, vm: RecordedVm, passes: int = 3, pass_s: float = 1.0) -> None:
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
            writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
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
        tg.create_task(unpaused(), name="gc-freeze")


async def unpaused() -> None:
    """Keep the fleet's own garbage collections short. A thousand QEMUs never stop
    together, but one Python process holding all of them would, for 100 ms and more at
    each full collection of its heap: then every reply and event waits, and comes in a
    burst afterwards, which is the fake's doing, not the daemon's. Survivors are frozen
    every 0.1 s, so a collection only ever scans the last moment's objects."""
    while True:
        gc.freeze()
        await asyncio.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n")[0])
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
