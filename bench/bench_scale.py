"""The real daemon at 1, 100 and 1,000 VMs: latency, footprint, start/stop, loop (issue 5).

Four processes: the daemon (``qmpdirty run`` through the CLI), a fake QEMU fleet
(``bench/fleet.py``: recorded QEMU 10.0.2 replies, realistic event streams, a few
VMs migrating in turn), a real mosquitto and this benchmark with a paho subscriber.
The 100-VM run adds three real QEMUs (``bench/labvms.py``) whose STOP/RESUME events
are measured apart. The daemon is configured for a busy host: every socket listed as
``[[vm]]``, ``[vfio] refresh_interval_s = 10``, ``[dirty_rate] interval_s = 5`` with
``windows = 1``.

* **Latency** (item 2): receipt on MQTT minus the event's QEMU timestamp (one clock),
  for every event whose timestamp falls in the steady window; p50/p99/max.
* **Footprint** (item 4): the daemon's RSS (VmRSS) and CPU (utime+stime over the
  window, percent of one core); the soak (full run only) keeps the 1,000-VM daemon
  for 10 minutes and reports RSS at 1, 5 and 10 minutes of steady state.
* **Start and stop** (item 5): exec to ``READY=1`` (sd_notify), to every VM
  ``online``, to every VM's ``tracking``; SIGTERM to exit, and how many ``offline``
  messages reached the subscriber.
* **Loop** (item 6): the 1,000-VM run again under ``--loop asyncio``; ratios.
* **Start-up** (issue 12, item 9): the latency of every event from the exec to the
  steady window (sessions starting, the first garbage collections), p99 and max.
* **QMP commands** the daemon sends per second in the window, as the fleet counts them,
  and how many were the hot-plug poll's ``qom-list``. ``Plan.settings`` ``"defaults"``
  runs the daemon with the shipped defaults instead of the busy host's.

Every figure carries ``machine`` (nproc, CPU, RAM, kernel, Python, QEMU, mosquitto).
The benchmark raises its open-file limit (inherited by the daemon) for 1,000 sockets.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fakectl import FakeFleet
from bench.fleet import raise_open_files
from bench.harness import (
    BROKER_CONFIG,
    BenchDaemon,
    ProcStats,
    Subscriber,
    default_config,
    machine,
    percentile,
    scale_config,
    wait_until,
)
from bench.labvms import LabVms
from qmpdirty.demo.lab.broker import Mosquitto

Figure = dict[str, Any]
SOAK_MARKS_S = (60, 300, 600)


@dataclass(frozen=True, slots=True)
class Plan:
    vms: int
    loop: str = "uvloop"
    reals: int = 0
    warm_s: float = 30.0
    window_s: float = 60.0
    soak: bool = False
    settings: str = "busy"  # or "defaults": the shipped configuration

    @property
    def event_rate(self) -> float:
        """Events/s over the fleet: one per VM every 20 s, at least 20/s for a sample."""
        return max(20.0, 0.05 * self.vms)

    @property
    def label(self) -> str:
        return f"{self.vms:,} VM{'s' if self.vms > 1 else ''}" + \
            (f", {self.loop}" if self.loop != "uvloop" else "") + \
            (", defaults" if self.settings == "defaults" else "")


@dataclass
class Outcome:
    plan: Plan
    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def _start(daemon: BenchDaemon, sub: Subscriber, out: Outcome) -> None:
    """Exec to READY=1, to every VM online, to every VM's first ``tracking``."""
    n = out.plan.vms
    started = time.time() - (time.monotonic() - daemon.started)
    out.values["ready_s"] = daemon.wait_ready()
    limit = 60 + n * 0.2
    online = wait_until(lambda: len(sub.vms_with("online")) >= n, limit, f"{n} VMs online")
    out.values["online_s"] = online - daemon.started
    tracked = wait_until(lambda: sub.kinds_seen("tracking") >= n, limit, f"{n} tracking")
    out.values["tracking_s"] = tracked - daemon.started
    out.notes["start"] = f"daemon exec at {started:.3f}"


def _latencies(sub: Subscriber, t0: float, t1: float, out: Outcome, emitted: int) -> None:
    """Event latency over the window, fake and real VMs apart."""
    seen = sub.events_between(t0, t1)
    fake = [e.latency_ms for e in seen if not e.vm.startswith("real-")]
    real = [e.latency_ms for e in seen if e.vm.startswith("real-")]
    for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        out.values[f"latency_{name}_ms"] = percentile(fake, q)
        if real:
            out.values[f"real_latency_{name}_ms"] = percentile(real, q)
    ingest = [(e.daemon_ts - e.qemu_ts) * 1000 for e in seen]
    out.notes["latency"] = (f"{len(fake)} events received of {emitted} emitted by the fake "
                            f"fleet in the window; QEMU->daemon stamp p99 "
                            f"{percentile(ingest, 0.99):.1f} ms")
    out.notes["real"] = f"{len(real)} real-QEMU STOP/RESUME events"


def _startup_latencies(sub: Subscriber, exec_at: float, t0: float, out: Outcome) -> None:
    """Every event from the daemon's exec to the steady window: the sessions starting,
    the first collections. Events the fleet sent before a session negotiated never
    reached the daemon (QEMU drops them too)."""
    early = [e.latency_ms for e in sub.events_between(exec_at, t0)
             if not e.vm.startswith("real-")]
    out.values["startup_latency_p99_ms"] = percentile(early, 0.99)
    out.values["startup_latency_max_ms"] = percentile(early, 1.0)
    out.notes["startup"] = f"{len(early)} events in the first {t0 - exec_at:.0f} s"


def _commands(before: dict[str, int], after: dict[str, int], span_s: float,
              out: Outcome) -> None:
    """QMP commands per second in the window, all and the hot-plug poll's share."""
    rate = {k: (after.get(k, 0) - before.get(k, 0)) / span_s for k in after}
    out.values["commands_per_s"] = sum(rate.values())
    out.values["qom_list_per_s"] = rate.get("qom-list", 0.0)
    out.notes["commands"] = ", ".join(f"{k} {v:.1f}/s" for k, v in
                                      sorted(rate.items(), key=lambda kv: -kv[1]) if v)


def _steady(daemon: BenchDaemon, sub: Subscriber, fleet: FakeFleet, out: Outcome) -> None:
    """CPU, RSS, message rates and latency over the steady window."""
    stats = ProcStats(daemon.pid)
    time.sleep(out.plan.warm_s)
    counts0, bytes0 = sub.snapshot_counts()
    fleet0 = fleet.control("stats")
    emitted0 = sum(fleet0["events"].values())
    t0, cpu0, rss = time.time(), stats.cpu_s(), []
    while time.time() - t0 < out.plan.window_s:
        time.sleep(min(5.0, out.plan.window_s))
        rss.append(stats.rss_mib())
    t1 = time.time()
    out.values["cpu_percent"] = 100 * (stats.cpu_s() - cpu0) / (t1 - t0)
    out.values["rss_mib"] = rss[-1]
    fleet1 = fleet.control("stats")
    emitted = sum(fleet1["events"].values()) - emitted0
    _commands(fleet0["commands"], fleet1["commands"], t1 - t0, out)
    counts1, bytes1 = sub.snapshot_counts()
    out.values["msgs_per_s"] = (sum(counts1.values()) - sum(counts0.values())) / (t1 - t0)
    out.values["bytes_per_s"] = (bytes1 - bytes0) / (t1 - t0)
    out.notes["rss"] = f"max {max(rss):.0f} MiB in the window"
    out.notes["msgs"] = ", ".join(f"{k} {(counts1[k] - counts0[k]) / (t1 - t0):.1f}/s"
                                  for k in sorted(counts1))
    retained = sub.retained_size
    out.values["retained_bytes_per_vm"] = sum(retained.values()) / max(1, out.plan.vms)
    _await_stragglers(sub, t0, t1, emitted, min(15.0, out.plan.window_s / 2))
    _latencies(sub, t0, t1, out, emitted)
    _startup_latencies(sub, daemon.exec_at, t0, out)


def _await_stragglers(sub: Subscriber, t0: float, t1: float, emitted: int, limit_s: float
                      ) -> None:
    """Give the window's last events time to arrive (a backlog delays them)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if sum(1 for e in sub.events_between(t0, t1) if not e.vm.startswith("real-")) \
                >= emitted:
            return
        time.sleep(0.2)


def _soak(daemon: BenchDaemon, out: Outcome) -> None:
    """RSS at 1, 5 and 10 minutes of steady state (counted from the window's start)."""
    stats, begun = ProcStats(daemon.pid), time.monotonic() - out.plan.window_s
    for mark in SOAK_MARKS_S:
        time.sleep(max(0.0, begun + mark - time.monotonic()))
        out.values[f"soak_rss_{mark}s"] = stats.rss_mib()
    first, last = out.values["soak_rss_60s"], out.values["soak_rss_600s"]
    out.values["soak_growth_percent"] = 100 * (last - first) / first


def _stop(daemon: BenchDaemon, sub: Subscriber, out: Outcome) -> None:
    """SIGTERM: time to exit, ``offline`` messages received (and when the last came)."""
    assert daemon.proc is not None
    sent = time.time()
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        daemon.proc.wait(40)
        out.values["stop_s"] = time.time() - sent
        out.notes["stop"] = f"exit code {daemon.proc.returncode}"
    except subprocess.TimeoutExpired:
        out.values["stop_s"] = time.time() - sent
        out.notes["stop"] = "did not exit within 40 s of SIGTERM: killed"
        daemon.proc.kill()
        daemon.proc.wait()
    time.sleep(0.5)
    offline = sub.vms_with("offline", since=sent)
    out.values["offline_delivered"] = len(offline)
    out.values["offline_last_s"] = max(offline.values(), default=sent) - sent
    tail = [line for line in daemon.log().splitlines() if "not delivered" in line]
    if tail:
        out.notes["stop"] += "; daemon: " + tail[-1].split(": ", 1)[-1]


def run_plan(plan: Plan) -> Outcome:
    """One daemon run: start, steady window, soak (optional), stop."""
    raise_open_files(plan.vms * 4 + 256)
    out = Outcome(plan)
    work = Path(tempfile.mkdtemp(prefix="qdscale-", dir="/tmp"))
    fakes = plan.vms - plan.reals
    with Mosquitto(BROKER_CONFIG) as broker, \
            FakeFleet(fakes, event_rate=plan.event_rate, migrating=min(5, fakes)) as fleet, \
            LabVms(plan.reals) as lab:
        sub = Subscriber(broker.port)
        sockets = fleet.sockets() + lab.sockets
        table = scale_config(broker.url, sockets) if plan.settings == "busy" else \
            default_config(broker.url, sockets)
        daemon = BenchDaemon(work, table, plan.loop)
        try:
            daemon.start()
            _start(daemon, sub, out)
            lab.poke()
            _steady(daemon, sub, fleet, out)
            if plan.soak:
                _soak(daemon, out)
            _stop(daemon, sub, out)
        finally:
            daemon.close()
            sub.close()
    return out


def _fig(name: str, value: float, unit: str, note: str = "", target: str | None = None
         ) -> Figure:
    figure: Figure = {"name": name, "value": round(value, 3), "unit": unit, "note": note}
    if target:
        figure["target"] = target
    return figure


def latency_figures(o: Outcome, at_scale: bool) -> list[Figure]:
    v, label = o.values, o.plan.label
    figures = [
        _fig(f"event latency p50, {label}", v["latency_p50_ms"], "ms", o.notes["latency"]),
        _fig(f"event latency p99, {label}", v["latency_p99_ms"], "ms",
             f"{o.plan.event_rate:g} events/s over the fleet", "<= 10" if at_scale else None),
        _fig(f"event latency max, {label}", v["latency_max_ms"], "ms"),
        _fig(f"event latency p99 from exec to the window, {label}",
             v["startup_latency_p99_ms"], "ms", o.notes["startup"]),
        _fig(f"event latency max from exec to the window, {label}",
             v["startup_latency_max_ms"], "ms", "start-up and the first collections",
             "<= 20" if at_scale else None),
    ]
    if "real_latency_p50_ms" in v:
        figures += [_fig(f"event latency {q}, real QEMUs among {label}",
                         v[f"real_latency_{q}_ms"], "ms", o.notes["real"])
                    for q in ("p50", "max")]
    return figures


def footprint_figures(o: Outcome, at_scale: bool) -> list[Figure]:
    v, label = o.values, o.plan.label
    return [
        _fig(f"daemon RSS, {label}", v["rss_mib"], "MiB", o.notes["rss"],
             "<= 200" if at_scale else None),
        _fig(f"daemon CPU, {label}", v["cpu_percent"], "% of one core",
             f"over {o.plan.window_s:g} s", "<= 50" if at_scale else None),
        _fig(f"MQTT messages received, {label}", v["msgs_per_s"], "msg/s", o.notes["msgs"]),
        _fig(f"MQTT payload bytes, {label}", v["bytes_per_s"], "B/s"),
        _fig(f"retained payload bytes per VM, {label}", v["retained_bytes_per_vm"], "B"),
        _fig(f"QMP commands sent, {label}", v["commands_per_s"], "commands/s",
             o.notes["commands"]),
        _fig(f"qom-list (hot-plug poll, refreshes), {label}", v["qom_list_per_s"], "commands/s"),
    ]


def start_stop_figures(o: Outcome) -> list[Figure]:
    v, label, n = o.values, o.plan.label, o.plan.vms
    return [
        _fig(f"start: exec to READY=1, {label}", v["ready_s"], "s"),
        _fig(f"start: exec to every VM online, {label}", v["online_s"], "s"),
        _fig(f"start: exec to every VM's tracking, {label}", v["tracking_s"], "s"),
        _fig(f"stop: SIGTERM to exit, {label}", v["stop_s"], "s", o.notes["stop"],
             "<= 10"),
        _fig(f"stop: offline messages delivered, {label}", v["offline_delivered"], "VMs",
             f"last {v['offline_last_s']:.2f} s after SIGTERM", f">= {n}"),
    ]


def soak_figures(o: Outcome) -> list[Figure]:
    v, label = o.values, o.plan.label
    figures = [_fig(f"soak RSS after {mark // 60} min, {label}", v[f"soak_rss_{mark}s"], "MiB")
               for mark in SOAK_MARKS_S]
    figures.append(_fig(f"soak RSS growth 1 -> 10 min, {label}", v["soak_growth_percent"],
                        "%", "10-minute soak", "< 5"))
    return figures


def loop_figures(uv: Outcome, aio: Outcome) -> list[Figure]:
    label = uv.plan.label
    ratio = "asyncio / uvloop, " + label
    a, u = aio.values, uv.values
    return [
        _fig(f"daemon CPU, {aio.plan.label}", a["cpu_percent"], "% of one core"),
        _fig(f"event latency p99, {aio.plan.label}", a["latency_p99_ms"], "ms"),
        _fig(f"daemon RSS, {aio.plan.label}", a["rss_mib"], "MiB"),
        _fig(f"CPU {ratio}", a["cpu_percent"] / max(u["cpu_percent"], 1e-9), "ratio"),
        _fig(f"latency p50 {ratio}", a["latency_p50_ms"] / max(u["latency_p50_ms"], 1e-9),
             "ratio"),
        _fig(f"latency p99 {ratio}", a["latency_p99_ms"] / max(u["latency_p99_ms"], 1e-9),
             "ratio"),
        _fig(f"time to every VM online {ratio}", a["online_s"] / max(u["online_s"], 1e-9),
             "ratio", "> 1: asyncio is slower"),
    ]


def figures_of(outcomes: list[Outcome]) -> list[Figure]:
    """Every figure of the runs; the 1,000-VM uvloop run carries the targets."""
    uv = [o for o in outcomes if o.plan.loop == "uvloop"]
    biggest = max(o.plan.vms for o in uv)
    figures: list[Figure] = []
    for o in uv:
        at_scale = o.plan.vms >= 1000
        figures += latency_figures(o, at_scale) + footprint_figures(o, at_scale)
        if o.plan.vms == biggest:
            figures += start_stop_figures(o)
        if o.plan.soak:
            figures += soak_figures(o)
    for aio in (o for o in outcomes if o.plan.loop == "asyncio"):
        twin = next(o for o in uv if o.plan.vms == aio.plan.vms)
        figures += loop_figures(twin, aio)
    return figures


def run(quick: bool = False) -> list[Figure]:
    if quick:
        plans = [Plan(20, warm_s=1, window_s=3), Plan(20, "asyncio", warm_s=1, window_s=3)]
    else:
        plans = [Plan(1, warm_s=15, window_s=30), Plan(100, reals=3, warm_s=20),
                 Plan(1000, soak=True), Plan(1000, "asyncio")]
    figures = figures_of([run_plan(p) for p in plans])
    where = machine()
    return [{**f, "machine": where} for f in figures]
