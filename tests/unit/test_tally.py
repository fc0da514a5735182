"""Repeated warnings are summarised: at most one line per interval, nothing uncounted."""

from __future__ import annotations

import logging

import pytest

from qmpdirty.daemon.losses import EventLosses
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


def test_flush_due_waits_for_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tally = Tally(logging.getLogger("t"), "x", 10.0, clock)
    with caplog.at_level(logging.WARNING, "t"):
        tally.note("first", 3)  # logged at once
        tally.note("second")
        clock.now += 5
        tally.flush_due()  # too soon: still counted, not logged
        assert len(caplog.records) == 1
        clock.now += 5
        tally.flush_due()
    assert [r.getMessage() for r in caplog.records] == ["x: 3 times (last: first)",
                                                        "x: second"]
    assert tally.total == 4


def test_event_losses_are_one_line_per_interval_for_every_vm(
        caplog: pytest.LogCaptureFixture) -> None:
    losses = EventLosses(interval_s=3600.0)
    with caplog.at_level(logging.WARNING, "qmpdirty.daemon.losses"):
        for n in range(1000):
            losses.unreadable(f"vm{n % 10}", "event X: data nested deeper than 200 levels")
            losses.dropped(f"vm{n % 3}", 2)
        losses.flush()
    assert len(caplog.records) == 2  # the first of each kind; the rest wait for the hour
    stats = losses.stats()
    assert (stats.dropped_total, stats.unreadable_total) == (2000, 1000) == losses.totals
    assert stats.unreadable_by_vm == {f"vm{n}": 100 for n in range(10)}
    assert sum(stats.dropped_by_vm.values()) == 2000
