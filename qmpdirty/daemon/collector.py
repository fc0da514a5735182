"""Keep CPython's garbage-collector pauses off the event path (shell).

A full (generation 2) collection scans every tracked object with the event loop
stopped: at 1,000 watched VMs ~600,000 objects, 100-250 ms. Measured at that scale
before this schedule: while the sessions started, CPython's own full collections ran
over and over (16-220 ms each, ~2 s in all in the first 5 s), and the one this module
then made 20 s after the start took 140 ms and found nothing; the daemon's objects die
by reference count, cycles are rare. So nothing here ever scans the whole heap unless
it has grown:

* from the start, whatever survived is frozen (``gc.freeze``: a constant-time list
  splice; frozen objects are never scanned again) every ``STARTUP_FREEZE_S`` while the
  sessions start, then every ``FREEZE_EVERY_S``: CPython's own collections only ever
  scan the last moments' objects, a few milliseconds at most. While the sessions start
  the loop is too busy for a timer to be punctual, so CPython's own full collections
  are held off until ``STARTUP_S`` (its third threshold raised);
* ``STARTUP_S`` after the start, glibc's ``malloc_trim`` hands the start-up peak back
  to the kernel (~20 MiB at 1,000 VMs; ~1 ms), and the process's peak resident size is
  noted;
* a full collection (unfreeze, collect, freeze again) runs only once that peak has
  grown by ``GROWTH`` since (the fraction CPython's own rule allows its oldest
  generation), at most every ``MIN_FULL_S``: a steady daemon never pauses for one, and
  cyclic garbage among frozen objects is bounded to about that fraction of the heap.
  (The heap is measured by the kernel's ``ru_maxrss``, a system call: counting the
  frozen objects, ``gc.get_freeze_count``, walks all of them, ~40 ms at 1,000 VMs.)

Frozen objects still die as usual when their last reference goes; only reference
cycles among them wait for a full collection. Must not: collect the whole heap on a
timer.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import resource
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Survivors are frozen this often while the sessions start (many objects per second) ...
STARTUP_FREEZE_S = 0.1
#: ... for this long after the start (1,000 VMs are online in about 5 s).
STARTUP_S = 20.0
#: Then this often (cheap).
FREEZE_EVERY_S = 1.0
#: CPython's third threshold while the sessions start: no full collection of its own.
HELD_OFF = 1_000_000
#: A full collection once the frozen heap grew by this fraction since the last one ...
GROWTH = 0.25
#: ... and at most this often.
MIN_FULL_S = 600.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None elsewhere (musl has none: then nothing is trimmed)."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


async def freeze_survivors(*, startup_s: float = STARTUP_S,
                           startup_freeze_s: float = STARTUP_FREEZE_S,
                           freeze_every_s: float = FREEZE_EVERY_S, growth: float = GROWTH,
                           min_full_s: float = MIN_FULL_S) -> None:
    """The schedule above, until cancelled."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], HELD_OFF)
    try:
        while loop.time() - started < startup_s:
            gc.freeze()
            await asyncio.sleep(startup_freeze_s)
    finally:
        gc.set_threshold(*thresholds)
    gc.freeze()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    baseline, last_full = _peak_kib(), loop.time()
    while True:
        await asyncio.sleep(freeze_every_s)
        gc.freeze()
        if _peak_kib() > baseline * (1 + growth) and loop.time() - last_full >= min_full_s:
            _full_collection(trim, baseline)
            baseline, last_full = _peak_kib(), loop.time()


def _peak_kib() -> int:
    """The most this process has been resident, KiB (Linux's ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _full_collection(trim: Callable[[int], int] | None, baseline_kib: int) -> None:
    """Collect everything, freeze the survivors, trim."""
    began = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    if trim is not None:
        trim(0)
    log.info("gc: peak resident size grew from %d to %d MiB: a full collection found %d "
             "unreachable objects in %.0f ms", baseline_kib // 1024, _peak_kib() // 1024,
             found, (time.perf_counter() - began) * 1000)
