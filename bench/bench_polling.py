"""A Nova-style poller against the event-driven daemon, on the same migrations (issue 5 #3).

Nova watches a live migration by asking libvirt for the job's statistics every 0.5 s,
which is ``query-migrate`` underneath. Here a minimal poller does exactly that on each
VM's second QMP monitor (QEMU serves one client per monitor and broadcasts events to
all), while the real daemon watches the first and publishes ``vm/<vm>/migration``.
Both watch the same migrations: fake VMs (``bench/fleet.py``, QEMU 10.0's sequence
setup -> active -> passes -> device -> completed) and, in the full run, real QEMUs
migrating to ``exec:cat > /dev/null``. Detection latency is the first sight of a status
(poll reply, or MQTT receipt) minus QEMU's timestamp of the MIGRATION event that
announced it: for the start (``setup``, detected by the first status either sees) and
the end (``completed``). Also counted: statuses the poller never saw (``setup`` and
``device`` last a few ms).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.fakectl import FakeFleet
from bench.harness import BROKER_CONFIG, BenchDaemon, Subscriber, machine, scale_config
from bench.labvms import LabVms
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl

Figure = dict[str, Any]
POLL_INTERVAL_S = 0.5
MIB = 2**20
Transition = tuple[str, str, float]  # (vm, status, QEMU timestamp)
#: A migration has started for whoever sees any of these first.
ANY_STATUS = {"setup", "active", "device", "completed"}


class Poller:
    """``query-migrate`` every ``interval_s`` on each monitor; keeps status changes."""

    def __init__(self, monitors: dict[str, Path], interval_s: float = POLL_INTERVAL_S) -> None:
        self.monitors = monitors
        self.interval_s = interval_s
        self.seen: list[tuple[str, str, float]] = []  # (vm, status, when first seen)
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._all()), daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _all(self) -> None:
        await asyncio.gather(*(self._watch(vm, path) for vm, path in self.monitors.items()))

    async def _watch(self, vm: str, path: Path) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=2**24)
        await reader.readline()  # greeting
        await self._ask(reader, writer, "qmp_capabilities", 0)
        await asyncio.sleep(random.uniform(0, self.interval_s))  # Nova's phase is arbitrary
        last, n = None, 1
        while not self._stop.is_set():
            began = time.monotonic()
            reply = await self._ask(reader, writer, "query-migrate", n)
            status = reply.get("return", {}).get("status")
            if status != last:
                self.seen.append((vm, str(status), time.time()))
                last = status
            n += 1
            self.polls += 1
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))
        writer.close()

    @staticmethod
    async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: str,
                   n: int) -> dict[str, Any]:
        writer.write(json.dumps({"execute": command, "id": n}).encode())
        while True:
            msg: dict[str, Any] = json.loads(await reader.readline())
            if msg.get("id") == n:  # events arrive here too: skipped
                return msg


def first_after(seen: list[tuple[str, str, float]], vm: str, statuses: set[str], ts: float
                ) -> float | None:
    """When ``vm`` was first seen in one of ``statuses`` at or after ``ts``."""
    return next((at for v, s, at in seen if v == vm and s in statuses and at >= ts), None)


def delays(transitions: list[Transition], seen: list[tuple[str, str, float]],
           start_statuses: set[str]) -> dict[str, list[float]]:
    """Seconds from each transition to its detection, start and end apart."""
    out: dict[str, list[float]] = {"start": [], "end": [], "missed": []}
    for vm, status, ts in transitions:
        if status == "setup":
            found = first_after(seen, vm, start_statuses, ts - 0.001)
            kind = "start"
        elif status == "completed":
            found = first_after(seen, vm, {"completed"}, ts - 0.001)
            kind = "end"
        else:
            continue
        if found is None:
            out["missed"].append(ts)
        else:
            out[kind].append(found - ts)
    return out


def fake_migrations(fleet: FakeFleet, count: int, passes: int, pass_s: float
                    ) -> list[Transition]:
    """``count`` migrations on distinct fake VMs, started at random moments."""
    chosen = random.sample(range(fleet.count), count)
    for index in chosen:
        fleet.control("migrate", vm=index, passes=passes, pass_s=pass_s)
        time.sleep(random.uniform(0.05, 0.4))
    time.sleep(passes * pass_s + 1.5)
    found: list[Transition] = []
    for index in chosen:
        found += [(f"vm-{index}", s, ts) for s, ts in
                  fleet.control("transitions", vm=index)["transitions"]]
    return found


def real_migrations(lab: LabVms, rounds: int) -> list[Transition]:
    """Each real VM migrates to ``exec:`` ``rounds`` times (64 MiB/s), then resumes."""
    found: list[Transition] = []
    for _ in range(rounds):
        for i, control in enumerate(lab.controls):
            found += _one_real(f"real-{i}", control)
    return found


def _one_real(vm: str, control: QmpControl) -> list[Transition]:
    control.events()
    control.cmd("migrate-set-parameters", **{"max-bandwidth": 64 * MIB})
    time.sleep(random.uniform(0.1, 0.5))
    control.cmd("migrate", uri="exec:cat > /dev/null")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = control.cmd("query-migrate")
        if isinstance(reply, dict) and reply.get("status") in ("completed", "failed"):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    events = control.events(wait_s=0.5)
    control.cmd("cont")
    return [(vm, e["data"]["status"], e["timestamp"]["seconds"] +
             e["timestamp"]["microseconds"] / 1e6)
            for e in events if e.get("event") == "MIGRATION"]


def measure(vms: int, migrations: int, real_rounds: int) -> dict[str, Any]:
    """Run the daemon and the poller over the same migrations; raw detection delays."""
    work = Path(tempfile.mkdtemp(prefix="qdpoll-", dir="/tmp"))
    reals = 2 if real_rounds else 0
    with Mosquitto(BROKER_CONFIG) as broker, FakeFleet(vms, monitors=2) as fleet, \
            LabVms(reals, poll_monitor=True) as lab:
        sub = Subscriber(broker.port)
        table = scale_config(broker.url, fleet.sockets() + lab.sockets,
                             dirty_rate={"enabled": False})
        daemon = BenchDaemon(work, table).start()
        monitors = {f"vm-{i}": fleet.socket(i, monitor=2) for i in range(vms)}
        monitors |= {f"real-{i}": path for i, path in enumerate(lab.poll_sockets)}
        poller = Poller(monitors)
        try:
            daemon.wait_ready()
            fleet.wait_connected(vms, 60)
            poller.start()
            time.sleep(2.0)
            transitions = fake_migrations(fleet, migrations, passes=3, pass_s=0.5)
            transitions += real_migrations(lab, real_rounds)
            time.sleep(1.0)
        finally:
            poller.stop()
            daemon.stop()
            daemon.close()
            sub.close()
    return {"transitions": transitions, "poller": poller.seen, "daemon": sub.migration,
            "polls": poller.polls}


def figures_from(raw: dict[str, Any]) -> list[Figure]:
    transitions: list[Transition] = raw["transitions"]
    daemon = delays(transitions, raw["daemon"], ANY_STATUS)
    poller = delays(transitions, raw["poller"], ANY_STATUS)
    missed_by_poller = {s for v, s, _ in transitions} - {s for _v, s, _ in raw["poller"]}
    n_real = sum(1 for v, s, _ in transitions if v.startswith("real-") and s == "setup")
    note = (f"{len(daemon['start'])} migrations ({n_real} real QEMU); poll every "
            f"{POLL_INTERVAL_S} s; the poller never saw: {sorted(missed_by_poller) or 'none'}")
    figures: list[Figure] = []
    for kind in ("start", "end"):
        d_ms = 1000 * statistics.mean(daemon[kind])
        p_ms = 1000 * statistics.mean(poller[kind])
        figures += [
            {"name": f"migration {kind} detected: daemon (event -> MQTT), mean",
             "value": round(d_ms, 2), "unit": "ms",
             "note": f"max {1000 * max(daemon[kind]):.1f} ms; missed {len(daemon['missed'])}"},
            {"name": f"migration {kind} detected: query-migrate poller, mean",
             "value": round(p_ms, 2), "unit": "ms",
             "note": f"max {1000 * max(poller[kind]):.1f} ms; {raw['polls']} polls"},
            {"name": f"migration {kind} detection latency, poller / daemon",
             "value": round(p_ms / d_ms, 1), "unit": "ratio", "note": note},
        ]
    return figures


def run(quick: bool = False) -> list[Figure]:
    raw = measure(10, 4, 0) if quick else measure(100, 40, 2)
    where = machine()
    return [{**f, "machine": where} for f in figures_from(raw)]
