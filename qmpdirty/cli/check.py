"""``qmpdirty check-config``: validate a config file, print every problem (shell).

Stage: cli. Exit 0 with a one-line summary when the file is valid, 2 with every
problem (key path, message, hint) on stderr when it is not. The summary names the
topic root the daemon will publish under; when ``topic_prefix`` or the host name had
to be sanitised for MQTT, a warning on stderr says what became of them. It must not
connect to anything: a valid file says nothing about a reachable broker or QEMU.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qmpdirty.cli.common import EXIT_OK, EXIT_USAGE, load_or_print
from qmpdirty.config.load import Config
from qmpdirty.telemetry.topics import Topics


def check_config(path: Path) -> int:
    """Validate ``path``; returns the exit code."""
    cfg = load_or_print(path)
    if cfg is None:
        return EXIT_USAGE
    topics = Topics.create(cfg.mqtt.topic_prefix, cfg.host.name)
    print(f"{path}: OK — MQTT {cfg.mqtt.url}, topics {topics.prefix}/{topics.host}/…, "
          f"{len(cfg.vm)} static VMs, {len(cfg.discovery.globs)} discovery globs, "
          f"server socket {cfg.server.socket or 'off'}")
    for line in sanitised_names(cfg, topics):
        print(f"warning: {line}", file=sys.stderr)
    return EXIT_OK


def sanitised_names(cfg: Config, topics: Topics) -> list[str]:
    """What ``Topics`` changed: subscribers must use the sanitised names."""
    changed = []
    if topics.prefix != cfg.mqtt.topic_prefix:
        changed.append(f"mqtt.topic_prefix {cfg.mqtt.topic_prefix!r} is published as "
                       f"{topics.prefix!r}")
    if topics.host != cfg.host.name:
        changed.append(f"host name {cfg.host.name!r} is published as "
                       f"{topics.host!r}")
    if changed:
        changed.append("topic levels keep only [A-Za-z0-9_.-]; subscribe to "
                       f"{topics.prefix}/{topics.host}/#")
    return changed
