"""``qmpdirty demo``: the whole story in under two minutes, on this machine alone.

Boots two small VMs under TCG (``alpha`` dirties 24 MiB/s; ``beta`` waits with
``-incoming``), starts a private mosquitto and the real daemon (``qmpdirty run``),
shows the telemetry arriving over MQTT (dirty rate, migration progress, pass
records), live-migrates alpha to beta over loopback, prints the summary, and
stops every process it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from qmpdirty.demo.errors import DemoError
from qmpdirty.demo.lab import end_child, free_port, track_child
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import (
    QmpControl,
    migrate,
    migrate_incoming,
    set_max_bandwidth,
    wait_for_migration,
)
from qmpdirty.demo.lab.guest import ensure_guest
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm

MIB = 1024 * 1024
RATE_MIB = 24
BANDWIDTH_MIB = 48


def _cache_dir() -> Path:
    env = os.environ.get("QMPDIRTY_GUEST_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "qmpdirty" / "guest"


class Screen:
    """Prints telemetry lines as they arrive (from a ``mosquitto_sub`` child)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def say(self, vm: str, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {vm:<6} {text}", flush=True)

    def feed(self, line: str) -> None:
        topic, _, payload = line.partition(" ")
        parts = topic.split("/")
        if len(parts) < 5 or parts[2] != "vm":
            return
        vm, kind = parts[3], "/".join(parts[4:])
        body: dict[str, Any] = json.loads(payload) if payload.startswith("{") else {"text": payload}
        with self.lock:
            self.seen.setdefault(f"{vm}/{kind}", []).append(body)
            self.changed.notify_all()
        self._show(vm, kind, body)

    def _show(self, vm: str, kind: str, b: dict[str, Any]) -> None:
        if kind == "status":
            self.say(vm, f"QMP session {b['text']}")
        elif kind == "info":
            self.say(vm, f"QEMU {b['qemu_version']} {b['machine']} {b['accel']}, "
                         f"{b['ram_bytes'] // MIB} MiB, {b['run_state']}: {b['role_reason']}")
        elif kind == "dirty_rate" and "text" in b:  # cleared: the guest no longer runs
            self.say(vm, "dirty rate cleared (the guest does not run here)")
        elif kind == "dirty_rate":
            self.say(vm, f"dirty rate {b['bytes_per_s'] / MIB:6.1f} MiB/s  ({b['source']}, "
                         f"{b['mode']})")
        elif kind == "migration":
            rem = b["remaining_bytes"]
            bw = b["bandwidth_bytes_per_s"]
            self.say(vm, f"migration {b['status']:<10} pass {b['pass']}"
                         + (f"  remaining {rem / MIB:6.1f} MiB" if rem is not None else "")
                         + (f"  {bw / MIB:5.1f} MiB/s" if bw else ""))
        elif kind == "migration/pass":
            dirty = b["dirty_bytes_per_s"]
            self.say(vm, f"pass {b['pass']} done at {b['elapsed_s']:.1f}s: remaining "
                         f"{(b['remaining_bytes'] or 0) / MIB:.1f} MiB, dirty "
                         + (f"{dirty / MIB:.1f} MiB/s" if dirty else "not yet known"))
        elif kind == "migration/summary" and b["role"] == "destination":
            self.say(vm, f"incoming migration {b['outcome']} after {b['total_time_ms']} ms")
        elif kind == "migration/summary":
            self.say(vm, f"migration {b['outcome']} in {b['total_time_ms']} ms, "
                         f"downtime {b['downtime_ms']} ms, {b['passes']} passes, "
                         f"{(b['transferred_bytes'] or 0) / MIB:.0f} MiB sent")

    def wait(self, key: str, count: int = 1, timeout_s: float = 60,
             match: dict[str, Any] | None = None) -> dict[str, Any]:
        """Block until ``count`` payloads on ``vm/kind`` (matching ``match``) have arrived."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                found = [b for b in self.seen.get(key, [])
                         if all(b.get(k) == v for k, v in (match or {}).items())]
                if len(found) >= count:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"demo: no {key} {match or ''} after {timeout_s:.0f}s")
                self.changed.wait(left)


def _subscribe(broker: Mosquitto, screen: Screen) -> subprocess.Popen[bytes]:
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "qmpdirty/#",
         "-F", "%t %p"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    track_child(sub)

    def pump() -> None:
        assert sub.stdout is not None
        for raw in sub.stdout:
            screen.feed(raw.decode(errors="replace").rstrip("\n"))

    threading.Thread(target=pump, daemon=True, name="demo-mqtt").start()
    return sub


def _daemon_config(work: Path, broker: Mosquitto, sockets: list[Path]) -> Path:
    vms = "\n".join(f'[[vm]]\nqmp = "unix:{s}"\n' for s in sockets)
    path = work / "qmpdirty.toml"
    path.write_text(f"""[mqtt]
url = "{broker.url}"
[host]
name = "demo"
{vms}
[dirty_rate]
interval_s = 3.0
window_s = 1.0
sample_pages = 16384
[migration]
poll_interval_s = 0.5
poll_interval_fast_s = 0.2
[daemon]
log_level = "info"
""")
    return path


def _start_daemon(work: Path, broker: Mosquitto, sockets: list[Path]) -> subprocess.Popen[bytes]:
    """The real CLI, ``qmpdirty run``, logging to ``work/daemon.log``."""
    config = _daemon_config(work, broker, sockets)
    with (work / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "qmpdirty", "run", "--config",
                                   str(config)], stdout=log, stderr=log)
    track_child(daemon)
    return daemon


def _migrate(screen: Screen, sock: dict[str, Path]) -> dict[str, Any]:
    """alpha -> beta over loopback, capped so that the passes can be watched."""
    with QmpControl(sock["alpha-ctl"]) as src, QmpControl(sock["beta-ctl"]) as dst:
        uri = f"tcp:127.0.0.1:{free_port()}"
        migrate_incoming(dst, uri)
        set_max_bandwidth(src, BANDWIDTH_MIB * MIB)
        screen.say("alpha", f"migrating to beta over {uri}, capped at {BANDWIDTH_MIB} MiB/s")
        migrate(src, uri)
        return wait_for_migration(src, 90)


def _report(summary: dict[str, Any]) -> None:
    keys = ("outcome", "statuses", "total_time_ms", "setup_time_ms", "downtime_ms", "passes",
            "transferred_bytes", "peak_dirty_bytes_per_s", "error")
    print(f"\nsummary of migration {summary['id']}:\n"
          + json.dumps({k: summary[k] for k in keys}, indent=2), flush=True)


def _story(work: Path, screen: Screen, broker: Mosquitto, vms: list[QemuVm],
           children: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """Everything the demo shows, in order; returns QEMU's final ``query-migrate``."""
    guest = ensure_guest(_cache_dir())
    broker.start()
    print(f"mosquitto on {broker.url}; files in {work}", flush=True)
    children.append(_subscribe(broker, screen))
    sock = {n: Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / f"{n}.sock"
            for n in ("alpha", "alpha-ctl", "beta", "beta-ctl")}
    alpha = QemuVm(QemuSpec("alpha", rate_mib=RATE_MIB,
                            qmp_servers=(sock["alpha"], sock["alpha-ctl"])), guest, work)
    beta = QemuVm(QemuSpec("beta", incoming="defer",
                           qmp_servers=(sock["beta"], sock["beta-ctl"])), guest, work)
    vms += [alpha.start(), beta.start()]
    alpha.wait_qmp()
    beta.wait_qmp()
    daemon = _start_daemon(work, broker, [sock["alpha"], sock["beta"]])
    children.append(daemon)
    for name in ("alpha", "beta"):
        screen.wait(f"{name}/status", match={"text": "online"})
    screen.say("alpha", f"guest up, dirtying {RATE_MIB} MiB/s ({alpha.wait_ready():.1f}s to boot)")
    screen.wait("alpha/dirty_rate", count=2)
    final = _migrate(screen, sock)
    summary = screen.wait("alpha/migration/summary", timeout_s=10)
    screen.wait("beta/migration/summary", timeout_s=10)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(15)
    screen.wait("alpha/status", match={"text": "offline"}, timeout_s=5)
    _report(summary)
    return final


def run_demo(workdir: Path | None) -> int:
    """Run the demo; 0 when the migration completed, 1 otherwise. Cleans up always."""
    work = workdir or Path(tempfile.mkdtemp(prefix="qmpdirty-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    children: list[subprocess.Popen[bytes]] = []
    vms: list[QemuVm] = []
    broker = Mosquitto()
    print("qmpdirty demo: building the guest (cached after the first run)...", flush=True)
    try:
        final = _story(work, Screen(started), broker, vms, children)
    except (DemoError, subprocess.TimeoutExpired) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for vm in vms:
            vm.stop()
        for child in children:
            end_child(child)
        broker.close()
    print(f"\ndone in {time.monotonic() - started:.0f}s"
          + (f"; files in {work}" if workdir else ""))
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if final.get("status") == "completed" else 1
