"""The garbage-collector schedule: survivors frozen from the start, the whole heap
collected only once it has grown (issue 12, item 9: no full collection on a timer)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from qmpdirty.daemon import collector
from qmpdirty.daemon.collector import _malloc_trim, freeze_survivors


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can reclaim it
        self.ballast = [[n] for n in range(10)]  # 11 tracked objects per node


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that runs meanwhile."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    yield seen
    gc.callbacks.remove(note)


async def test_survivors_are_frozen_from_the_start() -> None:
    gc.unfreeze()
    task = asyncio.create_task(freeze_survivors(startup_s=10.0, startup_freeze_s=0.02))
    try:
        await asyncio.sleep(0.05)
        first = gc.get_freeze_count()
        assert first > 0
        kept = [Node() for _ in range(1000)]
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() >= first + 1000
        del kept
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_no_full_collection_while_the_heap_stays_the_same(
        collections: list[int]) -> None:
    task = asyncio.create_task(freeze_survivors(
        startup_s=0.05, startup_freeze_s=0.01, freeze_every_s=0.01, min_full_s=0.0))
    try:
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    full = [g for g in collections if g == 2]
    assert gc.get_freeze_count() > 0
    assert len(full) <= 2  # CPython's own, of the last moments' objects only


async def test_cycles_among_frozen_objects_are_reclaimed_once_the_heap_grew(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Sessions that end leave their objects behind as frozen garbage (if cyclic); the
    sessions that replace them grow the heap, and that growth brings the full
    collection that reclaims the garbage."""
    caplog.set_level(logging.INFO, "qmpdirty.daemon.collector")
    peak = {"kib": 100_000}
    monkeypatch.setattr(collector, "_peak_kib", lambda: peak["kib"])
    task = asyncio.create_task(collector.freeze_survivors(
        startup_s=0.05, startup_freeze_s=0.01, freeze_every_s=0.02, growth=0.25,
        min_full_s=0.0))
    try:
        await asyncio.sleep(0.1)  # the start is over: the peak is noted
        old = [Node() for _ in range(1000)]
        gone = weakref.ref(old[0])
        await asyncio.sleep(0.1)  # frozen
        del old  # now frozen cyclic garbage
        peak["kib"] = 124_000  # grown, but by less than a quarter: no full collection
        await asyncio.sleep(0.1)
        assert gone() is not None and not caplog.records
        peak["kib"] = 126_000  # the replacements pushed it past a quarter
        await asyncio.sleep(0.1)
        assert gone() is None
        peak["kib"] = 150_000  # a quarter over 100 MB, but not over the new 126 MB
        await asyncio.sleep(0.1)
        assert [r.getMessage().split(":")[1] for r in caplog.records] == [
            " peak resident size grew from 97 to 123 MiB"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_malloc_trim_is_found_on_glibc() -> None:
    trim = _malloc_trim()
    assert trim is not None  # Debian: glibc
    assert trim(0) in (0, 1)
