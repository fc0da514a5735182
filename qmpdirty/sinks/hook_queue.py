"""The hook runs waiting for a worker: one bounded queue with two lanes (shell).

Stage: sink (``sinks.hooks`` puts runs in, ``sinks.hook_workers`` takes them out). Runs
wait in the order their events happened, in the ``normal`` lane. At stop the daemon's
``vm-offline`` runs move to the ``first`` lane, which every worker serves before the
other and the stop's own workers serve alone: a backlog of other events cannot keep
them from running within the shutdown deadline.

The bound (``[hooks] queue_size``) covers both lanes. When it is full the oldest
``normal`` run makes room, or, with none left, the oldest ``first`` run. This module
must not block or raise in ``put``, start processes, or log (the runner logs drops).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from qmpdirty.config.hooks import HookTrigger


@dataclass(frozen=True, slots=True)
class HookJob:
    """One queued run of one command."""

    kind: HookTrigger
    vm: str
    command: tuple[str, ...]
    timeout_s: float
    stdin: bytes


class HookQueue:
    """Bounded two-lane queue; ``join`` waits until every run put in has finished."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._first: deque[HookJob] = deque()
        self._normal: deque[HookJob] = deque()
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._first) + len(self._normal)

    @property
    def first_waiting(self) -> int:
        """Runs waiting in the ``first`` lane."""
        return len(self._first)

    def waiting(self) -> list[HookJob]:
        """The runs waiting, in the order workers take them (``first`` lane first)."""
        return [*self._first, *self._normal]

    def put(self, job: HookJob, first: bool = False) -> HookJob | None:
        """Queue ``job`` (in the ``first`` lane if asked); returns the run dropped to
        make room, if any. Never blocks."""
        dropped = None
        if len(self) >= self.size:
            dropped = (self._normal or self._first).popleft()
            self._finished()
        (self._first if first else self._normal).append(job)
        self._unfinished += 1
        self._idle.clear()
        self._changed.set()
        return dropped

    def promote(self, wanted: Callable[[HookJob], bool]) -> int:
        """Move the waiting ``normal`` runs that ``wanted`` picks to the end of the
        ``first`` lane, in order; returns how many moved."""
        moved = [job for job in self._normal if wanted(job)]
        if moved:
            self._normal = deque(job for job in self._normal if not wanted(job))
            self._first.extend(moved)
            self._changed.set()
        return len(moved)

    async def get(self, first_only: bool = False) -> HookJob:
        """The next run: the ``first`` lane's, else (unless ``first_only``) the
        ``normal`` lane's. Call ``done`` when it has finished."""
        while True:
            if self._first:
                return self._first.popleft()
            if self._normal and not first_only:
                return self._normal.popleft()
            self._changed.clear()
            await self._changed.wait()

    def done(self) -> None:
        """A run taken with ``get`` has finished."""
        self._finished()

    async def join(self) -> None:
        """Wait until every run put in has been dropped or has finished."""
        await self._idle.wait()

    def _finished(self) -> None:
        self._unfinished -= 1
        if self._unfinished == 0:
            self._idle.set()
