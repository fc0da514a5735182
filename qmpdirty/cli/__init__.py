"""The ``qmpdirty`` command line (shell): run, check-config, probe, demo.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration. The event
loop is chosen here and only here (uvloop by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qmpdirty import __version__, logs
from qmpdirty.config import DEFAULT_PATH, Config, load_config
from qmpdirty.config.address import parse_qmp_address
from qmpdirty.errors import ConfigError, QmpDirtyError

T = TypeVar("T")
log = logging.getLogger("qmpdirty")


def run_loop(coro: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """Run ``coro`` on the chosen event loop (uvloop unless told otherwise)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qmpdirty", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"qmpdirty {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    run.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")

    check = sub.add_parser("check-config", help="validate a config file; exit 2 on problems")
    check.add_argument("path", type=Path, nargs="?", default=DEFAULT_PATH)

    probe = sub.add_parser("probe", help="connect to one QEMU, gather, print")
    probe.add_argument("--qmp", required=True, metavar="ADDR", help="unix:PATH or tcp:HOST:PORT")
    probe.add_argument("--config", type=Path, help="use this config's [mqtt]/[host]/[qmp]")
    probe.add_argument("--json", action="store_true", help="print the payloads as JSON")

    demo = sub.add_parser("demo", help="boot two VMs, watch them, migrate one, clean up")
    demo.add_argument("--workdir", type=Path, help="keep the demo's files here")

    ranges = sub.add_parser("ranges", help="QEMU's DMA-logging IOVA ranges vs the best K ranges")
    source = ranges.add_mutually_exclusive_group(required=True)
    source.add_argument("--mtree", type=Path, metavar="FILE", help="`info mtree -f -o` output")
    source.add_argument("--qmp", metavar="ADDR", help="unix:PATH or tcp:HOST:PORT (read-only)")
    ranges.add_argument("--max-ranges", type=int, metavar="K",
                        help="ranges the device takes (default: LOG_MAX_RANGES, 256 at 4 KiB)")
    ranges.add_argument("--vfio-owner", action="append", default=[], metavar="OWNER",
                        help="id or QOM path of a vfio-pci device in the container (repeat)")
    ranges.add_argument("--qemu-version", metavar="X.Y", help="model this QEMU's rules")
    ranges.add_argument("--json", action="store_true", help="print one JSON object")

    admit = sub.add_parser("admit", help="may VM live-migrate now? exit 0 yes, 1 no (reasons), "
                           "3 broker unreachable or nothing retained")
    admit.add_argument("vm", metavar="VM", help="the VM's name (as in its topics)")
    admit.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    admit.add_argument("--host", metavar="NAME", help="the host publishing the VM (default: "
                       "this config's host; + = the host where the VM is online)")
    admit.add_argument("--timeout", type=float, default=3.0, metavar="S",
                       help="seconds to wait for the broker (default 3)")
    admit.add_argument("--allow-unknown", action="store_true",
                       help="admit when the forecast (or blockers) is missing or unknown")
    admit.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _print_problems(exc: ConfigError) -> None:
    print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
    for key, message, hint in exc.problems:
        print(f"  {key}: {message}\n    hint: {hint}", file=sys.stderr)


def _check_config(path: Path) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    print(f"{path}: OK — MQTT {cfg.mqtt.url}, host {cfg.host.resolved_name!r}, "
          f"{len(cfg.vm)} static VMs, {len(cfg.discovery.globs)} discovery globs, "
          f"server socket {cfg.server.socket or 'off'}")
    return 0


def _run(path: Path, loop: str) -> int:
    from qmpdirty.daemon.app import run_daemon

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    logs.configure(cfg.daemon.log_level)
    return run_loop(run_daemon(cfg, path), loop)


def _probe(address_text: str, config: Path | None, as_json: bool) -> int:
    from qmpdirty.cli.probe import human, probe

    try:
        address = parse_qmp_address(address_text)
        cfg = load_config(config) if config else Config()
    except ValueError as exc:
        print(f"--qmp: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    logs.configure("warning")
    try:
        result = run_loop(probe(cfg, address, time.time()))
    except QmpDirtyError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if as_json else human(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and dispatch; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "run":
        return _run(args.config, args.loop)
    if args.command == "probe":
        return _probe(args.qmp, args.config, args.json)
    if args.command == "ranges":
        from qmpdirty.cli.ranges import ranges_command

        return ranges_command(mtree=args.mtree, qmp=args.qmp, max_ranges=args.max_ranges,
                              as_json=args.json, vfio_owners=args.vfio_owner,
                              qemu_version=args.qemu_version, run=run_loop)
    if args.command == "admit":
        from qmpdirty.cli.admit import admit_command

        return admit_command(args.vm, config=args.config, host=args.host,
                             timeout_s=args.timeout, as_json=args.json,
                             allow_unknown=args.allow_unknown, run=run_loop)
    from qmpdirty.demo.show import run_demo

    logs.configure("warning")
    return run_demo(args.workdir)
