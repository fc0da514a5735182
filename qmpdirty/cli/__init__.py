"""The ``qmpdirty`` command line (shell): run, check-config, probe, ranges, admit, top,
demo, completion.

Stage: cli. This module only declares the arguments of every command and hands them
to the command's module (``run``, ``check``, ``probe``, ``ranges``, ``admit``, ``top``,
``demo``, ``completion``), imported when that command runs. Exit codes, the event loop
and the other shared pieces are in ``cli.common``. Exit codes: 0 success, 1 runtime
failure, 2 bad usage or configuration (``admit``: 1 not admitted, 3 cannot tell;
``top --once``: 3 cannot tell). A reader that closes stdout early (``| head``) ends the
command quietly with exit 1, never with a traceback. ``--help`` shows ``DESCRIPTION``
and ``EPILOG``, which README § Running the daemon repeats (tests/unit/test_readme.py
keeps them in step). The shell completion (``shtab``) and the man page
(``scripts/gen-man``, ``argparse-manpage``) are generated from ``build_parser``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from qmpdirty import __version__
from qmpdirty.cli.common import EXIT_FAILURE, run_loop
from qmpdirty.config.load import DEFAULT_PATH

#: ``qmpdirty --help``: what the program is, and its commands.
DESCRIPTION = (
    "Watch QEMU VMs over QMP and publish over MQTT whether they can live-migrate, how "
    "their VFIO devices' dirty pages are tracked, their dirty rate and their migrations. "
    "Commands: run, check-config, probe, ranges, admit, top, demo, completion."
)
#: ``qmpdirty --help``'s last lines: the exit codes of every command.
EPILOG = (
    "exit codes: 0 success; 1 runtime failure (for example QEMU or the broker cannot be "
    "reached, or stdout was closed early); 2 bad usage or configuration. admit: 0 "
    "admitted, 1 not admitted (reasons printed), 3 cannot tell (broker unreachable or "
    "nothing retained). top --once: 0 printed, 3 broker unreachable or nothing retained."
)

#: ``add_parser`` of the subcommands' action: adds one command.
AddParser = Callable[..., argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (the README's command list is checked against it)."""
    p = argparse.ArgumentParser(prog="qmpdirty", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"qmpdirty {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_and_check(sub.add_parser)
    _probe_and_demo(sub.add_parser)
    _ranges(sub.add_parser)
    _admit(sub.add_parser)
    _top(sub.add_parser)
    completion = sub.add_parser("completion", help="print the shell completion script "
                                "(bash: source <(qmpdirty completion bash))")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), metavar="SHELL",
                            help="bash, zsh or tcsh")
    return p


def _run_and_check(add: AddParser) -> None:
    run = add("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    run.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")

    check = add("check-config", help="validate a config file; exit 2 on problems")
    check.add_argument("path", type=Path, nargs="?", metavar="PATH",
                       help=f"the config file (default {DEFAULT_PATH})")
    check.add_argument("--config", type=Path, metavar="PATH",
                       help="the same, as run and admit take it")


def _probe_and_demo(add: AddParser) -> None:
    probe = add("probe", help="connect to one QEMU, gather, print")
    probe.add_argument("--qmp", required=True, metavar="ADDR", help="unix:PATH or tcp:HOST:PORT")
    probe.add_argument("--config", type=Path, help="use this config's [mqtt]/[host]/[qmp]")
    probe.add_argument("--json", action="store_true", help="print the payloads as JSON")

    demo = add("demo", help="three VMs, a simulated VFIO device, hot-plug, admit, migrate")
    demo.add_argument("--workdir", type=Path, help="keep the demo's files here")


def _ranges(add: AddParser) -> None:
    ranges = add("ranges", help="QEMU's DMA-logging IOVA ranges vs the best K ranges")
    source = ranges.add_mutually_exclusive_group(required=True)
    source.add_argument("--mtree", type=Path, metavar="FILE", help="`info mtree -f -o` output")
    source.add_argument("--qmp", metavar="ADDR", help="unix:PATH or tcp:HOST:PORT (read-only)")
    ranges.add_argument("--max-ranges", type=int, metavar="K",
                        help="ranges the device takes (default: LOG_MAX_RANGES, 256 at 4 KiB)")
    ranges.add_argument("--vfio-owner", action="append", default=[], metavar="OWNER",
                        help="id or QOM path of a vfio-pci device in the container (repeat)")
    ranges.add_argument("--qemu-version", metavar="X.Y", help="model this QEMU's rules")
    ranges.add_argument("--json", action="store_true", help="print one JSON object")


def _admit(add: AddParser) -> None:
    admit = add("admit", help="may VM live-migrate now? exit 0 yes, 1 no (reasons), "
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


def _top(add: AddParser) -> None:
    from qmpdirty.telemetry.fleet_view import SORT_KEYS

    top = add("top", help="live view of every VM on the broker (or one host), from the "
                          "retained state; --once prints one snapshot")
    top.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    top.add_argument("--host", metavar="NAME", help="only this host (default: every host)")
    top.add_argument("--sort", choices=SORT_KEYS, default="name",
                     help="name (host, VM), status (worst first), dirty (highest first), "
                          "eta (soonest first); default name")
    top.add_argument("--once", action="store_true",
                     help="print one snapshot as plain text and exit (3: nothing retained)")
    top.add_argument("--interval", type=float, default=1.0, metavar="S",
                     help="seconds between redraws (default 1)")
    top.add_argument("--timeout", type=float, default=3.0, metavar="S",
                     help="seconds to wait for the broker (default 3)")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        from qmpdirty.cli.completion import completion_command

        return completion_command(parser, args.shell)
    if args.command == "check-config":
        if args.path and args.config and args.path != args.config:
            parser.error(f"check-config: two config files ({args.path}, --config "
                         f"{args.config}); give one")
        args.path = args.path or args.config or DEFAULT_PATH
    try:
        code = _dispatch(args)
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _stdout_closed() -> int:
    """stdout's reader went away (``| head``): exit 1 quietly. stdout now points to
    /dev/null, so that Python's own flush at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command (its module imported only now)."""
    match args.command:
        case "run":
            from qmpdirty.cli.run import run

            return run(args.config, args.loop)
        case "check-config":
            from qmpdirty.cli.check import check_config

            return check_config(args.path)
        case "probe":
            from qmpdirty.cli.probe import probe_command

            return probe_command(args.qmp, args.config, args.json)
        case "ranges":
            from qmpdirty.cli.ranges import ranges_command

            return ranges_command(mtree=args.mtree, qmp=args.qmp, max_ranges=args.max_ranges,
                                  as_json=args.json, vfio_owners=args.vfio_owner,
                                  qemu_version=args.qemu_version, run=run_loop)
        case "admit":
            from qmpdirty.cli.admit import admit_command

            return admit_command(args.vm, config=args.config, host=args.host,
                                 timeout_s=args.timeout, as_json=args.json,
                                 allow_unknown=args.allow_unknown, run=run_loop)
        case "top":
            from qmpdirty.cli.top import top_command

            return top_command(config=args.config, host=args.host, sort=args.sort,
                               once=args.once, interval_s=args.interval,
                               timeout_s=args.timeout, run=run_loop)
        case _:
            from qmpdirty.cli.demo import demo

            return demo(args.workdir)
