"""Keep CPython's garbage-collector pauses off the event path (shell).

A full (generation 2) collection scans every tracked object with the event loop
stopped. At 1,000 watched VMs that is ~600,000 objects: 100-250 ms pauses every few
seconds, the tail of the event latency measured by bench_scale, and each found no
garbage (the daemon's objects die by reference count; cycles are rare). So:

* after ``FIRST_S`` (the sessions are up), and then every ``COLLECT_EVERY_S``: one
  full collection, and the survivors are frozen (``gc.freeze``: never scanned again);
* every ``FREEZE_EVERY_S`` in between, whatever survived since is frozen too. That is
  a constant-time list splice, so collections only ever scan the last few seconds'
  objects.

Frozen objects still die as usual when their last reference goes; only reference
cycles among them wait for the next full collection (every ``COLLECT_EVERY_S``).

After each full collection glibc's ``malloc_trim`` hands freed heap back to the
kernel: the start (every VM's first full gather at once) leaves ~20 MiB of it at
1,000 VMs that would otherwise stay in the RSS for good.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The first full collection, once the VMs' sessions are up.
FIRST_S = 20.0
#: Survivors are frozen this often (cheap).
FREEZE_EVERY_S = 1.0
#: A full collection this often: one pause per period, and cyclic garbage bounded by it.
COLLECT_EVERY_S = 600.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None elsewhere (musl has none: then nothing is trimmed)."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


async def freeze_survivors(first_s: float = FIRST_S, freeze_every_s: float = FREEZE_EVERY_S,
                           collect_every_s: float = COLLECT_EVERY_S) -> None:
    """The schedule above, until cancelled."""
    trim = _malloc_trim()
    await asyncio.sleep(first_s)
    while True:
        began = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        if trim is not None:
            trim(0)
        log.debug("gc: full collection found %d objects, froze %d, in %.0f ms", found,
                  gc.get_freeze_count(), (time.perf_counter() - began) * 1000)
        next_full = time.monotonic() + collect_every_s
        while (left := next_full - time.monotonic()) > 0:
            await asyncio.sleep(min(freeze_every_s, left))
            gc.freeze()
