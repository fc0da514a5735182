"""Repeated warnings are summarised: at most one line per interval, nothing uncounted."""

from __future__ import annotations

import logging

import pytest

from qmpdirty.daemon.tally import Tally


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_is_logged_at_once_then_one_summary_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tally = Tally(logging.getLogger("t"), "server: handshake failed", 10.0, clock)
    with caplog.at_level(logging.WARNING, "t"):
        for n in range(2000):
            clock.now = 100.0 + n * 0.01  # 2,000 failures in 20 s
            tally.note(f"peer {n}")
        tally.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "server: handshake failed: peer 0"
    assert len(lines) <= 4
    counted = [int(line.removeprefix("server: handshake failed: ").split(" ")[0])
               for line in lines[1:]]
    assert 1 + sum(counted) == 2000 == tally.total
    assert lines[-1].endswith("(last: peer 1999)")


def test_flush_without_news_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    tally = Tally(logging.getLogger("t"), "x", 10.0, Clock())
    with caplog.at_level(logging.WARNING, "t"):
        tally.flush()
    assert caplog.records == []
