"""``qmpdirty run``: load the configuration, then run the daemon until stopped (shell).

Stage: cli. Reads the config (problems are printed, exit 2), sets up logging and runs
``daemon.app.run_daemon`` on the chosen event loop. Everything else is the daemon's:
this module must not wire any part of the pipeline.
"""

from __future__ import annotations

from pathlib import Path

from qmpdirty import logs
from qmpdirty.cli.common import EXIT_USAGE, load_or_print, run_loop
from qmpdirty.daemon.app import run_daemon


def run(path: Path, loop: str) -> int:
    """Run the daemon with the config at ``path``; returns its exit code."""
    cfg = load_or_print(path)
    if cfg is None:
        return EXIT_USAGE
    logs.configure(cfg.daemon.log_level)
    return run_loop(run_daemon(cfg, path), loop)
