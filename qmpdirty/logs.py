"""Logging set-up (shell): one line per record to stderr, journald-friendly.

Under systemd (``JOURNAL_STREAM`` set) timestamps are left to the journal.
``qemu.qmp`` logs every disconnect at error level; qmpdirty reports those itself,
so the library is kept at warning and above only when debugging.
"""

from __future__ import annotations

import logging
import os
import sys


def configure(level: str) -> None:
    """Configure the root logger once, at start-up."""
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{stamp}%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    library_level = logging.WARNING if level == "debug" else logging.CRITICAL
    logging.getLogger("qemu.qmp").setLevel(library_level)
