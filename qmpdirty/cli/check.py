"""``qmpdirty check-config``: validate a config file, print every problem (shell).

Stage: cli. Exit 0 with a one-line summary when the file is valid, 2 with every
problem (key path, message, hint) on stderr when it is not. It must not connect to
anything: a valid file says nothing about a reachable broker or QEMU.
"""

from __future__ import annotations

from pathlib import Path

from qmpdirty.cli.common import EXIT_OK, EXIT_USAGE, load_or_print


def check_config(path: Path) -> int:
    """Validate ``path``; returns the exit code."""
    cfg = load_or_print(path)
    if cfg is None:
        return EXIT_USAGE
    print(f"{path}: OK — MQTT {cfg.mqtt.url}, host {cfg.host.resolved_name!r}, "
          f"{len(cfg.vm)} static VMs, {len(cfg.discovery.globs)} discovery globs, "
          f"server socket {cfg.server.socket or 'off'}")
    return EXIT_OK
