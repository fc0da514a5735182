"""Repeated warnings summarised: at most one log line per interval (shell).

A peer that may open the server socket can make thousands of connections that fail
the QMP handshake; one WARNING each would flood the journal (2,000 connections wrote
2,302 lines). ``Tally`` logs the first occurrence at once, then counts, and logs one
summary per ``interval_s`` (from ``flush``, which the owner calls on a timer, and on
the next ``note`` after the interval; ``flush_due`` only then). Must not: drop the
count, or log per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Tally:
    """Counts one kind of warning and logs it at most once per ``interval_s``."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._what = what
        self._interval_s = interval_s
        self._clock = clock
        self._logged_at: float | None = None
        self._count = 0
        self._last = ""
        self.total = 0

    def note(self, detail: str, count: int = 1) -> None:
        """``count`` more occurrences; ``detail`` says what happened this time."""
        self.total += count
        self._count += count
        self._last = detail
        self.flush_due()

    def flush_due(self) -> None:
        """``flush``, if nothing was logged for ``interval_s`` (or ever)."""
        if self._logged_at is None or self._clock() - self._logged_at >= self._interval_s:
            self.flush()

    def flush(self) -> None:
        """Log what was counted since the last line, if anything."""
        if not self._count:
            return
        if self._count == 1:
            self._log.warning("%s: %s", self._what, self._last)
        else:
            span = "" if self._logged_at is None else \
                f" in the last {self._clock() - self._logged_at:.0f} s"
            self._log.warning("%s: %d times%s (last: %s)", self._what, self._count, span,
                              self._last)
        self._count = 0
        self._logged_at = self._clock()
