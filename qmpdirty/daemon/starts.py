"""How many VM sessions may be starting at once (shell).

A session's start - connect, greeting, identification, the first ``info`` and
migration questions - costs the event loop a few milliseconds. At the daemon's start
every VM starts at once: 1,000 of them kept the loop busy for seconds, and every
event that came meanwhile waited behind all of it. ``StartGate`` lets at most
``MAX_STARTING`` sessions start at once; the rest wait their turn before they connect
(QEMU sends no event before a client has negotiated, so nothing waits on their side).
A session holds its ``StartSlot`` from before it connects until its pipeline has
started (``VmPipeline.run``), and gives it back however it ends. Must not: hold a slot
while a session runs, or gate anything but starts.
"""

from __future__ import annotations

import asyncio

#: Sessions starting at once, at most: enough to keep the loop busy while QEMU answers,
#: few enough that an event never waits behind more than a few milliseconds of starts.
MAX_STARTING = 8


class StartSlot:
    """One session's permission to start; ``release`` when started (idempotent)."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


class StartGate:
    """At most ``limit`` sessions between ``enter`` and their slot's ``release``."""

    def __init__(self, limit: int = MAX_STARTING) -> None:
        self._semaphore = asyncio.Semaphore(limit)

    async def enter(self) -> StartSlot:
        await self._semaphore.acquire()
        return StartSlot(self._semaphore)
