"""Logging set-up (shell): one line per record to stderr, journald-friendly.

Under systemd (``JOURNAL_STREAM`` set) timestamps are left to the journal and every
line starts with its syslog priority (``<3>`` error, ``<4>`` warning, ``<6>`` info,
``<7>`` debug), which journald's stream transport reads (``SyslogLevelPrefix=``, on
by default), so ``journalctl -p warning -u qmpdirty`` shows warnings and worse.
``qmpdirty.sinks``/``daemon`` must not format priorities themselves: this is the only
place. ``qemu.qmp`` logs every disconnect at error level; qmpdirty reports those
itself, so the library is kept at warning and above only when debugging.
"""

from __future__ import annotations

import logging
import os
import sys

#: syslog priority of each logging level (sd-daemon(3)); levels in between round down.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a record's level: CRITICAL 2, ERROR 3, WARNING 4, INFO 6,
    anything lower 7 (debug)."""
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return 7


class JournalFormatter(logging.Formatter):
    """Prefixes each line of a record with ``<N>`` (its syslog priority): journald
    splits a multi-line record (a traceback) into lines, each read on its own."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def configure(level: str) -> None:
    """Configure the root logger once, at start-up."""
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    if journal:
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    library_level = logging.WARNING if level == "debug" else logging.CRITICAL
    logging.getLogger("qemu.qmp").setLevel(library_level)
