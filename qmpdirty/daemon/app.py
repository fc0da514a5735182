"""The daemon's lifecycle: start, reload, watchdog, graceful stop (shell).

Modelled on uvicorn: signals set events, the main coroutine owns every task in
TaskGroups, and shutdown has a deadline. SIGTERM/SIGINT: stop every VM session
(each publishes ``offline``), publish the daemon's ``offline``, flush the outbox,
tell systemd ``STOPPING=1``, and return within ``[daemon] shutdown_deadline_s``.
SIGHUP re-reads the config's VM list and discovery globs. Beside the fleet,
``forget.Forgetting`` clears the retained state of VMs gone for ``[daemon]
forget_after_s``; it stops first, so a stop never forgets anything.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from pathlib import Path
from typing import Protocol

from qmpdirty import __version__
from qmpdirty.config.hooks import HookTrigger
from qmpdirty.config.load import Config, load_config
from qmpdirty.daemon.collector import freeze_survivors
from qmpdirty.daemon.fleet import Fleet, serve
from qmpdirty.daemon.forget import Forgetting
from qmpdirty.daemon.hotplug import watch_host_vfio
from qmpdirty.daemon.limits import raise_open_files
from qmpdirty.daemon.vm import Context, VmPublisher
from qmpdirty.errors import ConfigError, QmpConnectError
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.listener import QmpListener
from qmpdirty.qmp.session import quiet_library_quirks
from qmpdirty.sdnotify import SystemdNotifier
from qmpdirty.sinks.hooks import HookOutcome, HookRunner
from qmpdirty.sinks.mqtt import MqttSink
from qmpdirty.sinks.outbox import Outbox
from qmpdirty.sinks.prometheus import PrometheusExporter, Tee
from qmpdirty.telemetry import render
from qmpdirty.telemetry.discovery import host_messages
from qmpdirty.telemetry.topics import Topics, sanitise

log = logging.getLogger(__name__)


def policy_from(cfg: Config) -> CommandPolicy:
    """The command allow-list's switches, from config."""
    return CommandPolicy(
        enable_migration_events=cfg.qmp.enable_migration_events,
        measure_dirty_rate=cfg.dirty_rate.enabled,
        apply_recommendations=cfg.policy.apply_recommendations and not cfg.policy.under_libvirt,
    )


def default_client_id(host: str, config_path: Path | None) -> str:
    """``qmpdirty-<host>``, plus the config's stem for template instances
    (``qmpdirty@a`` reads ``a.toml``): two clients with one id knock each other off."""
    stem = config_path.stem if config_path is not None else "qmpdirty"
    return f"qmpdirty-{host}" if stem == "qmpdirty" else f"qmpdirty-{host}-{sanitise(stem)}"


class Daemon:
    """One qmpdirty process: a sink, a fleet of VM supervisors, optionally a listener."""

    def __init__(self, cfg: Config, config_path: Path | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        topics = Topics.create(cfg.mqtt.topic_prefix, cfg.host.name)
        client_id = cfg.mqtt.client_id or default_client_id(topics.host, config_path)
        self.sink = MqttSink(cfg.mqtt, topics, client_id)
        # [prometheus] listen: /metrics is fed every message the broker is fed
        self.exporter = PrometheusExporter(topics) if cfg.prometheus.listen else None
        out = self.sink if self.exporter is None else Tee(self.sink, self.exporter)
        self.ctx = Context(cfg, out, topics, policy_from(cfg))
        self.hooks = HookRunner(cfg, self._hook_failed) if cfg.hook else None
        self.ctx.hooks = self.hooks
        self.notifier = SystemdNotifier.from_env(os.environ)
        self.started_ts = time.time()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._stats_due = asyncio.Event()
        self.sink.on_drop(lambda _n: self._stats_due.set())

    def _hook_failed(self, event: HookTrigger, vm: str, command: tuple[str, ...],
                     outcome: HookOutcome) -> None:
        """A hook failed: log it and publish it on ``vm/<vm>/hook``."""
        log.warning("hook %s for VM %s (%s): %s", event, vm, command[0], outcome.error)
        state = self.ctx.vms.get(vm)
        if state is not None:
            out = VmPublisher(self.ctx, state)
            out.publish(render.hook_result(out.stamp(), outcome))

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``request_stop``), then stop within the deadline."""
        loop = asyncio.get_running_loop()
        quiet_library_quirks(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        raise_open_files()
        listener = open_listener(self.cfg)
        if self.exporter is not None and (where := self.cfg.prometheus.address) is not None:
            self.exporter.start(*where)
        ha = self.cfg.homeassistant
        if ha.enabled:  # the host's device, which every VM's hangs from
            for msg in host_messages(self.ctx.topics, ha.discovery_prefix):
                self.sink.publish(msg)
        try:
            async with asyncio.TaskGroup() as infra:
                background = [
                    infra.create_task(self.sink.run(), name="mqtt-sink"),
                    infra.create_task(publish_stats(self.sink, self.ctx, self.started_ts,
                                                    self._stats_due), name="daemon-stats"),
                    infra.create_task(watchdog(self.notifier), name="watchdog"),
                    infra.create_task(freeze_survivors(), name="gc-freeze"),
                ]
                if self.cfg.vfio.enabled and self.cfg.vfio.hotplug_poll_s:
                    background.append(infra.create_task(
                        watch_host_vfio(self.cfg, self.ctx.host_vfio), name="host-vfio"))
                if self.hooks is not None:
                    background.append(infra.create_task(self.hooks.run(), name="hooks"))
                await self._serve_until_stopped(listener)
                for task in background:
                    task.cancel()
        finally:
            if listener is not None:
                listener.close()
            if self.exporter is not None:
                self.exporter.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            # A broker client from a failed connect can sit in a reference cycle (its
            # exception's traceback); finalised after the loop closed, paho's __del__
            # calls back into the closed loop and prints a traceback. Collect it now
            # (after the offline messages went out: a full collection takes a moment).
            gc.unfreeze()
            gc.collect()

    async def _serve_until_stopped(self, listener: QmpListener | None) -> None:
        deadline_s = self.cfg.daemon.shutdown_deadline_s
        async with asyncio.TaskGroup() as vms:
            fleet = Fleet(self.ctx, vms)
            await fleet.reconcile(self.cfg)
            server = vms.create_task(serve(self.ctx, listener), name="qmp-server") \
                if listener is not None else None
            forgetting = vms.create_task(Forgetting(self.ctx).run(), name="forget")
            if not self.notifier.ready(f"watching {len(fleet)} QMP addresses"):
                log.warning("could not notify systemd (NOTIFY_SOCKET); continuing")
            log.info("qmpdirty %s running: %d QMP addresses, MQTT %s", __version__, len(fleet),
                     self.cfg.mqtt.url)
            await self._reconcile_until_stopped(fleet)
            forgetting.cancel()
            started = time.monotonic()
            self.notifier.stopping("publishing offline")
            if self.hooks is not None:  # the vm-offline hooks this stop fires run first
                self.hooks.stopping()
            log.info("stopping: publishing offline for %d VMs", len(self.ctx.vms))
            tasks = fleet.stop_all()
            if server is not None:
                server.cancel()
                tasks.append(server)
            await asyncio.wait(tasks, timeout=deadline_s / 2) if tasks else None
        if self.hooks is not None:  # the vm-offline hooks the stop fired
            left = deadline_s - (time.monotonic() - started)
            await self.hooks.finish(max(0.1, left / 2))
        self.sink.publish(render.host_status(self.ctx.topics, online=False))
        remaining = max(0.1, deadline_s - (time.monotonic() - started))
        if not await self.sink.flush(remaining):
            why = "deadline passed" if self.sink.connected else "broker unreachable"
            log.warning("stopping: %s; %d messages not delivered", why,
                        len(self.sink.outbox) + self.sink.in_flight)

    async def _reconcile_until_stopped(self, fleet: Fleet) -> None:
        interval = self.cfg.discovery.rescan_interval_s
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                reload = asyncio.ensure_future(self._reload.wait())
                await asyncio.wait({stop, reload}, timeout=interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                reload.cancel()
                if self._reload.is_set():
                    self._reload.clear()
                    self.cfg = reread_vm_list(self.cfg, self.config_path)
                    self.ctx.cfg = self.cfg
                if not self._stop.is_set():
                    await fleet.reconcile(self.cfg)
        finally:
            stop.cancel()



def open_listener(cfg: Config) -> QmpListener | None:
    """Server mode's socket, open (None without ``[server] socket``)."""
    s = cfg.server
    if s.socket is None:
        return None
    listener = QmpListener(s.socket, s.mode_bits, s.group)
    listener.open()
    log.info("server mode: QEMUs may dial %s", s.socket)
    return listener


def reread_vm_list(cfg: Config, config_path: Path | None) -> Config:
    """SIGHUP: ``cfg`` with the new ``[[vm]]`` list and discovery globs, the rest kept
    (``cfg`` itself when the file is gone or broken: logged)."""
    if config_path is None:
        return cfg
    try:
        fresh = load_config(config_path)
    except ConfigError as exc:
        log.error("SIGHUP: %s; keeping the running VM list", exc)
        return cfg
    log.info("SIGHUP: %d static VMs, %d discovery globs", len(fresh.vm),
             len(fresh.discovery.globs))
    return cfg.model_copy(update={"vm": fresh.vm, "discovery": fresh.discovery})


class StatsSink(Protocol):
    """What the ``daemon`` topic reads of the MQTT sink (``MqttSink``): its counters,
    not a ``Publisher`` (the topic goes out through ``Context.sink``, which is the
    ``Tee`` with ``/metrics`` when that is on, so it is not the sink it reads)."""

    @property
    def outbox(self) -> Outbox: ...
    @property
    def connects(self) -> int: ...


#: The ``daemon`` topic is checked this often (and so published at most this often) ...
STATS_TICK_S = 1.0
#: ... and published at least this often (its outbox figures move on their own).
STATS_REFRESH_S = 60.0


async def publish_stats(sink: StatsSink, ctx: Context, started_ts: float,
                        due: asyncio.Event, *, tick_s: float = STATS_TICK_S,
                        refresh_s: float = STATS_REFRESH_S) -> None:
    """``<prefix>/<host>/daemon``: at start, whenever ``vms_online``, ``vms_known``,
    ``mqtt_connects`` or the lost QMP events changed (the first connect included: B7),
    when ``due`` (an outbox overflow), and every ``refresh_s``; checked every ``tick_s``,
    so at most that often. Each tick also lets the lost events' log summaries out."""
    loop = asyncio.get_running_loop()
    seq, shown, shown_at = 0, None, 0.0
    while True:
        ctx.losses.flush()
        online = sum(1 for vm in ctx.vms.values() if vm.online)
        now = (online, len(ctx.vms), sink.connects, ctx.losses.totals)
        if now != shown or due.is_set() or loop.time() - shown_at >= refresh_s:
            seq += 1
            out = sink.outbox
            ctx.sink.publish(render.daemon_state(  # the MQTT sink, and /metrics if on
                ctx.topics, seq, time.time(), version=__version__, started_ts=started_ts,
                vms_online=online, vms_known=len(ctx.vms),
                outbox=out.stats(), qmp_events=ctx.losses.stats(),
                mqtt_connects=sink.connects,
            ))
            shown, shown_at = now, loop.time()
            due.clear()
        await asyncio.sleep(tick_s)


async def watchdog(notifier: SystemdNotifier) -> None:
    """Ping systemd's watchdog at the interval it asked for (none: nothing to do)."""
    interval = notifier.watchdog_interval_s
    if interval is None:
        return
    warned = False
    while True:
        if not notifier.watchdog() and not warned:
            log.warning("watchdog ping to systemd failed; systemd may restart the daemon")
            warned = True
        await asyncio.sleep(interval)


async def run_daemon(cfg: Config, config_path: Path | None) -> int:
    """Entry point of ``qmpdirty run`` inside the event loop; returns the exit code."""
    try:
        daemon = Daemon(cfg, config_path)
        await daemon.run()
    except (QmpConnectError, ConfigError) as exc:
        log.error("%s", exc)
        return 1
    log.info("stopped")
    return 0
