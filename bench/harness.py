"""What the scale and polling benchmarks share: the machine, the daemon, the subscriber.

* ``machine()``: nproc, CPU model, RAM, kernel, Python, QEMU and mosquitto versions.
* ``ProcStats``: one process's RSS (``/proc/<pid>/status`` VmRSS) and CPU time
  (``/proc/<pid>/stat`` utime + stime): the daemon's alone, never the fleet's.
* ``BenchDaemon``: the real ``qmpdirty run`` (the lab's ``DaemonProcess``) with
  ``--loop`` and a private ``$NOTIFY_SOCKET``, so ``READY=1`` is timed as systemd sees it.
  ``$QMPDIRTY_BENCH_LAUNCHER`` (a Python script taking ``qmpdirty``'s arguments) runs
  another build instead, to measure a candidate change without touching the tree.
* ``Subscriber``: a paho client on its own thread that keeps only small tuples (event
  latency = receipt time - the event's QEMU timestamp, VM status changes, ``migration``
  statuses, message counts and the size of every retained topic).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from qmpdirty.demo.lab.daemon_process import QMPDIRTY, DaemonProcess

HOST = "benchhost"
#: The benchmark broker sends without Nagle, as EMQX and HiveMQ do by default: the
#: figures are the daemon's, not 40 ms delayed-ACK stalls between broker and subscriber.
BROKER_CONFIG = ("set_tcp_nodelay true",)
_TICK = os.sysconf("SC_CLK_TCK")
#: Topic kinds the contract retains (README § MQTT contract).
RETAINED = frozenset({"status", "info", "tracking", "blockers", "dirty_rate", "migration",
                      "forecast", "migration/summary"})


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (out.stdout or out.stderr).strip().splitlines()[0]


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return {
        "nproc": os.cpu_count(), "cpu": model[1] if model else platform.processor(),
        "ram_gib": round(int(mem[1]) / 2**20, 1) if mem else None,
        "kernel": platform.release(), "python": platform.python_version(),
        "qemu": _first_line(["qemu-system-x86_64", "--version"]),
        "mosquitto": _first_line(["mosquitto", "-h"]),
    }


class ProcStats:
    """RSS and CPU seconds of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s*(\d+) kB", status, re.M)
        return int(found[1]) / 1024 if found else 0.0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)

    def cpu_percent(self, window_s: float) -> float:
        """Percent of one core over the next ``window_s`` seconds (sleeps)."""
        cpu0, t0 = self.cpu_s(), time.monotonic()
        time.sleep(window_s)
        return 100 * (self.cpu_s() - cpu0) / (time.monotonic() - t0)


class BenchDaemon(DaemonProcess):
    """``qmpdirty run --config C --loop L`` with READY=1 timed through $NOTIFY_SOCKET."""

    def __init__(self, workdir: Path, table: dict[str, Any], loop: str = "uvloop") -> None:
        self.notify_path = workdir / "notify.sock"
        self.notify_path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self.notify_path))
        super().__init__(workdir, table, env={"NOTIFY_SOCKET": str(self.notify_path)})
        self.loop = loop
        self.started = 0.0
        self.exec_at = 0.0  # wall clock of the exec: events are stamped on it

    def start(self) -> BenchDaemon:
        with self.log_path.open("ab") as log:
            self.started, self.exec_at = time.monotonic(), time.time()
            launcher = os.environ.get("QMPDIRTY_BENCH_LAUNCHER")
            command = [sys.executable, launcher] if launcher else [QMPDIRTY]
            self.proc = subprocess.Popen(
                [*command, "run", "--config", str(self.config), "--loop", self.loop],
                stdout=log, stderr=log, env=self._env, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds from the exec to systemd's ``READY=1``."""
        self._notify.settimeout(timeout_s)
        while True:
            message = self._notify.recv(4096).decode()
            if "READY=1" in message:
                return time.monotonic() - self.started

    def close(self) -> None:
        super().close()
        self._notify.close()
        self.notify_path.unlink(missing_ok=True)


def scale_config(url: str, sockets: list[Path], **overrides: dict[str, Any]) -> dict[str, Any]:
    """A busy host's daemon: every socket listed, 10 s topology refresh, a dirty rate
    every 5 s of one 1 s window (four back-to-back windows, the default, would measure
    4 s of every 5: the defaults' plan measures them at their 30 s interval)."""
    table: dict[str, Any] = {
        "mqtt": {"url": url}, "host": {"name": HOST},
        "vm": [{"qmp": f"unix:{path}"} for path in sockets],
        "dirty_rate": {"enabled": True, "interval_s": 5.0, "windows": 1},
        "vfio": {"refresh_interval_s": 10.0},
        "daemon": {"log_level": "info", "shutdown_deadline_s": 10.0},
    }
    for name, section in overrides.items():
        table[name] = {**table.get(name, {}), **section}
    return table


def default_config(url: str, sockets: list[Path]) -> dict[str, Any]:
    """The shipped defaults, with every socket listed (dirty rate every 30 s, topology
    refresh every 60 s, the hot-plug poll every 5 s)."""
    return {
        "mqtt": {"url": url}, "host": {"name": HOST},
        "vm": [{"qmp": f"unix:{path}"} for path in sockets],
        "daemon": {"log_level": "info", "shutdown_deadline_s": 10.0},
    }


@dataclass(frozen=True, slots=True)
class EventSeen:
    vm: str
    event: str
    qemu_ts: float
    daemon_ts: float  # the payload's ``ts``: when the daemon stamped it
    at: float

    @property
    def latency_ms(self) -> float:
        return (self.at - self.qemu_ts) * 1000


class Subscriber:
    """Subscribes to ``qmpdirty/<HOST>/#`` (QoS 1) and keeps what the figures need."""

    def __init__(self, port: int) -> None:
        self.events: list[EventSeen] = []
        self.status: list[tuple[str, str, float]] = []  # (vm, online/offline, at)
        self.migration: list[tuple[str, str, float]] = []  # (vm, status, at)
        self.counts: Counter[str] = Counter()
        self.bytes = 0
        self.retained_size: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_a: subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError(f"could not subscribe on port {port}")

    def _on_connect(self, client: paho.Client, *_a: object) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):  # Nagle + delayed ACK would add 40 ms stalls
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(f"qmpdirty/{HOST}/#", qos=1)

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        at = time.time()
        parts = msg.topic.split("/")
        if len(parts) < 5 or parts[2] != "vm":
            return
        vm, kind = parts[3], "/".join(parts[4:])
        with self._lock:
            self.counts[kind.split("/")[0]] += 1
            self.bytes += len(msg.payload)
            if kind in RETAINED:
                self.retained_size[vm, kind] = len(msg.payload)
            if kind.startswith("event/"):
                body = json.loads(msg.payload)
                if body.get("qemu_ts") is not None:
                    self.events.append(EventSeen(vm, kind[6:], float(body["qemu_ts"]),
                                                 float(body["ts"]), at))
            elif kind == "status":
                self.status.append((vm, msg.payload.decode(), at))
            elif kind == "migration":
                self.migration.append((vm, str(json.loads(msg.payload).get("status")), at))

    def snapshot_counts(self) -> tuple[Counter[str], int]:
        with self._lock:
            return Counter(self.counts), self.bytes

    def events_between(self, t0: float, t1: float) -> list[EventSeen]:
        with self._lock:
            return [e for e in self.events if t0 <= e.qemu_ts < t1]

    def vms_with(self, state: str, since: float = 0.0) -> dict[str, float]:
        """VM -> the first time it was reported ``state`` (after ``since``)."""
        first: dict[str, float] = {}
        with self._lock:
            for vm, text, at in self.status:
                if text == state and at >= since:
                    first.setdefault(vm, at)
        return first

    def kinds_seen(self, kind: str) -> int:
        with self._lock:
            return sum(1 for (_vm, k) in self.retained_size if k == kind)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def wait_until(check: Any, timeout_s: float, what: str, step_s: float = 0.05) -> float:
    """Poll ``check()`` until truthy; returns the time.monotonic() it became so."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(step_s)
    return time.monotonic()
