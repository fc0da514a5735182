"""``qmpdirty top``: a live terminal view of the fleet, from the retained state (shell).

Stage: cli. Subscribes to ``<prefix>/+/#`` (``<prefix>/<host>/#`` with ``--host``),
keeps the newest payload of each topic in a ``telemetry.fleet_view.FleetState`` and
draws its ``rows`` with ``rich``: one line per VM with its status and role, whether it
may migrate (and the first blocker), each VFIO device's mode, the dirty rate with its
bound, the forecast, and a progress bar with ETA while it migrates. ``--once`` prints
one snapshot as plain text (no ANSI unless stdout is a terminal) and exits: 0, or 3
when the broker cannot be reached or nothing is retained (like ``admit``). Live, a
lost broker is shown in the title and retried every ``RETRY_S``; Ctrl-C exits 0.

This module must not publish or talk to QEMU; what a row says is decided in
``fleet_view``, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Final

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from qmpdirty import logs
from qmpdirty.cli.common import EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, Runner, load_or_print
from qmpdirty.config.sections import MqttConfig
from qmpdirty.errors import SinkError
from qmpdirty.sinks.retained import scan_retained
from qmpdirty.sinks.watch import watch
from qmpdirty.telemetry.fleet_view import FleetState, SortKey, VmRow, bar, duration, rows
from qmpdirty.telemetry.topics import sanitise

#: Live: seconds between reconnect attempts after the broker went away.
RETRY_S: Final = 2.0
#: ``--once``: retained topics read at most (a fleet of 1,000 VMs has ~10,000).
SCAN_LIMIT: Final = 200_000
#: Width of a snapshot written to a pipe or file (a terminal uses its own).
PIPE_WIDTH: Final = 240
_COLUMNS: Final = ("HOST", "VM", "STATUS", "ROLE", "MIGRATABLE", "VFIO", "DIRTY",
                   "FORECAST", "MIGRATION")


def top_command(*, config: Path, host: str | None, sort: SortKey, once: bool,
                interval_s: float, timeout_s: float, run: Runner) -> int:
    """``qmpdirty top``: draw until Ctrl-C, or print one snapshot with ``--once``."""
    cfg = load_or_print(config)
    if cfg is None:
        return EXIT_USAGE
    logs.configure("critical")  # the MQTT library's errors would tear the screen: the
    # title (live) or one line on stderr (--once) says what went wrong instead
    if not (interval_s > 0 and timeout_s > 0):
        print("--interval and --timeout must be more than 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    prefix = cfg.mqtt.topic_prefix
    topic_filter = f"{prefix}/{sanitise(host)}/#" if host else f"{prefix}/+/#"
    fleet = FleetState(prefix)
    if once:
        return _once(cfg.mqtt, topic_filter, fleet, sort=sort, timeout_s=timeout_s, run=run)
    with contextlib.suppress(KeyboardInterrupt):
        run(_live(cfg.mqtt, topic_filter, fleet, sort=sort, interval_s=interval_s,
                  timeout_s=timeout_s))
    return EXIT_OK


def _once(cfg: MqttConfig, topic_filter: str, fleet: FleetState, *, sort: SortKey,
          timeout_s: float, run: Runner) -> int:
    """One snapshot of the retained state, as plain text."""
    try:
        scan = run(scan_retained(cfg, topic_filter, payloads_of=topic_filter,
                                 timeout_s=timeout_s, limit=SCAN_LIMIT))
    except SinkError as exc:
        print(f"top: cannot reach the broker: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    for topic, payload in scan.found.items():
        fleet.apply(topic, payload)
    if not fleet.vms:
        print(f"top: nothing retained under {topic_filter} (is qmpdirty running?)",
              file=sys.stderr)
        return EXIT_UNKNOWN
    console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH, highlight=False)
    with console.capture() as captured:
        console.print(table(rows(fleet, sort), title(fleet, sort, None), plain=True))
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    return EXIT_OK


async def _live(cfg: MqttConfig, topic_filter: str, fleet: FleetState, *, sort: SortKey,
                interval_s: float, timeout_s: float) -> None:
    """Redraw every ``interval_s`` while a watcher (reconnecting) feeds ``fleet``."""
    problem: list[str] = []

    def take(topic: str, payload: bytes) -> None:
        fleet.apply(topic, payload)

    def connected() -> None:
        """The broker sends every retained message again: start from nothing, so that
        what it lost meanwhile (a restart without persistence) leaves the screen."""
        fleet.vms.clear()
        fleet.hosts.clear()
        problem.clear()

    async def feed() -> None:
        while True:
            try:
                await watch(cfg, topic_filter, take, timeout_s, on_connected=connected)
            except SinkError as exc:
                problem[:] = [str(exc)]
            await asyncio.sleep(RETRY_S)

    task = asyncio.create_task(feed())
    try:
        with Live(auto_refresh=False, screen=True, redirect_stderr=False) as live:
            while True:
                error = problem[0] if problem else None
                live.update(table(rows(fleet, sort), title(fleet, sort, error)), refresh=True)
                await asyncio.sleep(interval_s)
    finally:
        task.cancel()


def title(fleet: FleetState, sort: SortKey, error: str | None) -> str:
    """The line above the table: counts, hosts offline, sort order, time or error."""
    hosts = {h for h, _ in fleet.vms}
    offline = sorted(h for h, s in fleet.hosts.items() if s == "offline" and h in hosts)
    text = f"qmpdirty top: {len(fleet.vms)} VMs on {len(hosts)} hosts, sorted by {sort}"
    if offline:
        text += f"; hosts offline: {', '.join(offline)}"
    return text + (f"; {error}" if error else f"; {time.strftime('%H:%M:%S')}")


def table(made: list[VmRow], caption: str, plain: bool = False) -> Table:
    """The rows as a ``rich`` table; ``plain``: no box, for scripts."""
    t = Table(title=Text(caption), title_justify="left", box=None if plain else box.SIMPLE_HEAD,
              pad_edge=False, expand=False)
    for name in _COLUMNS:
        t.add_column(name, no_wrap=True, overflow="ellipsis",
                     max_width=48 if name == "MIGRATABLE" else None)
    for row in made:
        t.add_row(Text(row.host), Text(row.vm), _styled_status(row.status, plain),
                  *(Text(cell) for cell in (row.role, row.migratable, row.vfio, row.dirty,
                                            row.forecast, migration_cell(row))))
    return t


def migration_cell(row: VmRow) -> str:
    """The migration's status, with a bar and ETA while it runs."""
    if row.progress is None:
        return row.migration
    eta = f" ETA {duration(row.eta_s)}" if row.eta_s is not None else ""
    return f"{row.migration} {bar(row.progress)}{eta}"


def _styled_status(status: str, plain: bool) -> Text:
    """The status, coloured live (never markup: a payload's text is not parsed)."""
    if plain:
        return Text(status)
    colour = {"online": "green", "unresponsive": "yellow", "error": "red"}.get(status, "dim")
    return Text(status, style=colour)
