"""``qmpdirty demo``: the whole story in well under a minute, on this machine alone.

Boots three small VMs under TCG: ``alpha`` dirties 24 MiB/s, ``beta`` waits with
``-incoming``, ``gamma`` has a simulated VFIO device (``simulated``: a real QEMU behind
the lab's VFIO stand-in, with a fake host tree). Starts a private mosquitto and the real
daemon (``qmpdirty run``) and shows what it publishes over MQTT, one line per change
(``screen``): gamma's VFIO tracking mode and how it was reached, its DMA-logging ranges,
their fit and the optimal plan; alpha's dirty rate and pre-migration forecast. Then
hot-plugs into gamma a device that blocks migration: the blocker with its remedy,
``qmpdirty admit gamma`` saying no and why; unplugs it: migratable, admitted. Then
live-migrates alpha to beta over loopback, prints the summary, and stops every process
it started.
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from qmpdirty.demo import simulated
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
from qmpdirty.demo.screen import Screen
from qmpdirty.demo.simulated import NAME as GAMMA
from qmpdirty.demo.simulated import SimulatedVm

MIB = 1024 * 1024
RATE_MIB = 24
GAMMA_RATE_MIB, GAMMA_WSS_MIB = 4, 16
BANDWIDTH_MIB = 48


def _cache_dir() -> Path:
    env = os.environ.get("QMPDIRTY_GUEST_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "qmpdirty" / "guest"


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


def _daemon_config(work: Path, broker: Mosquitto, sockets: list[Path],
                   gamma: SimulatedVm) -> Path:
    """The daemon's config: the three VMs, gamma's host tree and device limits, and the
    bandwidth alpha will be migrated with (so that its forecast uses it)."""
    vms = "\n".join(f'[[vm]]\nqmp = "unix:{s}"\n' for s in sockets)
    path = work / "qmpdirty.toml"
    path.write_text(f"""[mqtt]
url = "{broker.url}"
[host]
name = "demo"
{gamma.host_toml()}
{vms}
{gamma.device_caps_toml()}
[dirty_rate]
interval_s = 3.0
window_s = 1.0
sample_pages = 16384
[forecast]
bandwidth_bytes_per_s = {BANDWIDTH_MIB * MIB}
[migration]
poll_interval_s = 0.5
poll_interval_fast_s = 0.2
[vfio]
hotplug_poll_s = 1.0
debounce_s = 0.2
[daemon]
log_level = "info"
""")
    return path


def _start_daemon(config: Path, work: Path) -> subprocess.Popen[bytes]:
    """The real CLI, ``qmpdirty run``, logging to ``work/daemon.log``."""
    with (work / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "qmpdirty", "run", "--config",
                                   str(config)], stdout=log, stderr=log)
    track_child(daemon)
    return daemon


def _admit(screen: Screen, config: Path) -> int:
    """``qmpdirty admit gamma``, as a scheduler would run it; its output, its exit code."""
    screen.say(GAMMA, f"$ qmpdirty admit {GAMMA}")
    out = subprocess.run([sys.executable, "-m", "qmpdirty", "admit", GAMMA, "--config",
                          str(config)], capture_output=True, text=True, timeout=30, check=False)
    for line in (out.stdout + out.stderr).splitlines():
        screen.say(GAMMA, f"  {line}")
    verdict = {0: "admitted", 1: "not admitted"}.get(out.returncode, "cannot tell")
    screen.say(GAMMA, f"  exit {out.returncode}: {verdict}")
    return out.returncode


def _hotplug(screen: Screen, gamma: SimulatedVm, config: Path) -> bool:
    """Plug a device that blocks migration into gamma, ask ``admit``, unplug it, ask
    again. True when admit said no, then yes."""
    args = simulated.device_add_arguments()
    with QmpControl(gamma.socket) as qmp:
        blockers = screen.mark(f"{GAMMA}/blockers")
        screen.say(GAMMA, "device_add " + ",".join(f"{k}={v}" for k, v in args.items())
                   + ": a simulated NVMe controller on plain vfio-pci (no migration driver)")
        qmp.cmd("device_add", **args)
        screen.wait(f"{GAMMA}/blockers", 15, {"migratable": False}, after=blockers)
        denied = _admit(screen, config) == 1
        blockers = screen.mark(f"{GAMMA}/blockers")
        screen.say(GAMMA, f"device_del id={args['id']}")
        qmp.cmd("device_del", id=args["id"])
        screen.wait(f"{GAMMA}/blockers", 15, {"migratable": True}, after=blockers)
        screen.wait_latest(f"{GAMMA}/forecast", 20, {"verdict": "converges"})
        admitted = _admit(screen, config) == 0
    return denied and admitted


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


def _boot(work: Path, stack: ExitStack) -> tuple[dict[str, Path], QemuVm, SimulatedVm]:
    """alpha and beta (two QMP sockets each: the daemon's, the demo's) and gamma."""
    guest = ensure_guest(_cache_dir())
    sockets = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))  # AF_UNIX paths are short
    stack.callback(shutil.rmtree, sockets, ignore_errors=True)
    sock = {n: sockets / f"{n}.sock" for n in ("alpha", "alpha-ctl", "beta", "beta-ctl")}
    alpha = QemuVm(QemuSpec("alpha", rate_mib=RATE_MIB,
                            qmp_servers=(sock["alpha"], sock["alpha-ctl"])), guest, work)
    beta = QemuVm(QemuSpec("beta", incoming="defer",
                           qmp_servers=(sock["beta"], sock["beta-ctl"])), guest, work)
    for vm in (alpha, beta):
        stack.callback(vm.stop)
        vm.start()
    gamma = stack.enter_context(
        simulated.simulated_vm(guest, work, GAMMA_RATE_MIB, GAMMA_WSS_MIB))
    alpha.wait_qmp()
    beta.wait_qmp()
    return sock, alpha, gamma


def _story(work: Path, screen: Screen, stack: ExitStack) -> bool:
    """Everything the demo shows, in order; True when it went as it should."""
    broker = stack.enter_context(Mosquitto())
    print(f"mosquitto on {broker.url}; files in {work}", flush=True)
    stack.callback(end_child, _subscribe(broker, screen))
    sock, alpha, gamma = _boot(work, stack)
    for line in simulated.INTRO:
        print(line, flush=True)
    config = _daemon_config(work, broker, [sock["alpha"], sock["beta"], gamma.socket], gamma)
    daemon = _start_daemon(config, work)
    stack.callback(end_child, daemon)
    for name in ("alpha", "beta", GAMMA):
        screen.wait(f"{name}/status", match={"text": "online"})
    screen.wait(f"{GAMMA}/tracking")
    alpha.wait_ready()
    gamma.vm.wait_ready()
    screen.say("alpha", f"guest up, dirtying {RATE_MIB} MiB/s")
    # a measurement whose window began after the guest's set-up (the first one after
    # its ready line may have begun before it), then the forecast from it
    screen.wait("alpha/dirty_rate", 15, after=screen.mark("alpha/dirty_rate") + 1)
    screen.wait_latest("alpha/forecast", 20, {"verdict": "converges"})
    admit_ok = _hotplug(screen, gamma, config)
    final = _migrate(screen, sock)
    summary = screen.wait("alpha/migration/summary", timeout_s=10)
    screen.wait("beta/migration/summary", timeout_s=10)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(15)
    screen.wait("alpha/status", match={"text": "offline"}, timeout_s=5)
    _report(summary)
    if not admit_ok:
        print("demo: admit did not say no with the device plugged and yes without it",
              file=sys.stderr)
    return admit_ok and final.get("status") == "completed"


def run_demo(workdir: Path | None) -> int:
    """Run the demo; 0 when it went as it should, 1 otherwise. Cleans up always."""
    work = workdir or Path(tempfile.mkdtemp(prefix="qmpdirty-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print("qmpdirty demo: building the guest (cached after the first run)...", flush=True)
    screen = Screen(started, watched="alpha", simulated=frozenset({GAMMA}))
    try:
        with ExitStack() as stack:
            ok = _story(work, screen, stack)
    except (DemoError, subprocess.TimeoutExpired) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print(f"\ndone in {time.monotonic() - started:.0f}s"
          + (f"; files in {work}" if workdir else ""))
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1
