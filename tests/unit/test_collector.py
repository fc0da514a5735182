"""The garbage-collector schedule: survivors frozen, later ones too, cycles reclaimed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from qmpdirty.daemon.collector import _malloc_trim, freeze_survivors


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can reclaim it


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


async def test_survivors_are_frozen_and_cycles_reclaimed_at_each_full_collection() -> None:
    task = asyncio.create_task(freeze_survivors(first_s=0.0, freeze_every_s=0.02,
                                                collect_every_s=0.2))
    try:
        await asyncio.sleep(0.05)
        first = gc.get_freeze_count()
        assert first > 0
        kept = [Node() for _ in range(1000)]  # alive: frozen by the next cheap freeze
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() >= first + 1000
        gone = weakref.ref(kept[0])
        del kept  # cyclic garbage among frozen objects: waits for the full collection
        await asyncio.sleep(0.3)
        assert gone() is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_malloc_trim_is_found_on_glibc() -> None:
    trim = _malloc_trim()
    assert trim is not None  # Debian: glibc
    assert trim(0) in (0, 1)
