"""The hook workers: take runs from the queue, run each one, report failures (shell).

Stage: sink (``sinks.hooks`` puts runs in a ``HookQueue`` and owns one pool of these,
which takes them out). ``run`` is ``[hooks] max_concurrent`` workers, each running one
``[[hook]]`` command at a time (``sinks.hook_process``: a run ends with the hook's own
exit). At stop ``finish`` adds as many workers that serve only the queue's ``first``
lane (the ``vm-offline`` runs), so a backlog of other hooks cannot keep those from
running within the deadline.

This module must not:
* pass the daemon's environment (a hook sees ``QMPDIRTY_EVENT``, ``QMPDIRTY_VM``,
  ``QMPDIRTY_HOST`` and ``PATH`` only);
* let anything a hook does, or the result callback, end a worker (or the daemon);
* leave a hook, or what finished hooks left in their process groups, behind once
  cancelled.
Every failure (exit status, timeout, missing executable) goes to ``on_result`` as a
``HookOutcome``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from qmpdirty.config.hooks import HookTrigger
from qmpdirty.sinks.hook_process import GroupSweeper, HookOutcome, execute, outcome
from qmpdirty.sinks.hook_queue import HookJob, HookQueue

#: The hook runner's records keep the logger name they had before this module was split off.
log = logging.getLogger("qmpdirty.sinks.hooks")

#: PATH given to hooks when the daemon itself has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: ``on_result(kind, vm, command, outcome)``, called for failed runs only.
OnResult = Callable[[HookTrigger, str, tuple[str, ...], HookOutcome], None]


def hook_environment(kind: HookTrigger, vm: str, host: str, path: str) -> dict[str, str]:
    """The whole environment of a hook: nothing of the daemon's leaks but PATH.
    ``QMPDIRTY_EVENT`` is the event as the hook names it (``qmp:GUEST_PANICKED``)."""
    return {"QMPDIRTY_EVENT": kind, "QMPDIRTY_VM": vm, "QMPDIRTY_HOST": host, "PATH": path}


class HookWorkers:
    """The worker pool that executes the runs of one ``HookQueue``."""

    def __init__(self, queue: HookQueue, max_concurrent: int, host: str,
                 on_result: OnResult) -> None:
        self._queue = queue
        self._max_concurrent = max_concurrent
        self._host = host
        self._path = os.environ.get("PATH") or DEFAULT_PATH
        self._on_result = on_result
        self._sweeper = GroupSweeper()
        self.started_total = 0

    async def run(self) -> None:
        """Run queued hooks, ``max_concurrent`` at a time, until cancelled; then kill
        what finished hooks left in their process groups."""
        try:
            async with asyncio.TaskGroup() as tg:
                for n in range(self._max_concurrent):
                    tg.create_task(self._worker(), name=f"hook-worker-{n}")
        finally:
            self._sweeper.sweep_all()

    async def finish(self, timeout_s: float) -> bool:
        """Run what is queued, for at most ``timeout_s``, with ``max_concurrent`` more
        workers that serve only the ``first`` lane. False (and a warning with the count
        of runs left) when some had not run."""
        async with asyncio.TaskGroup() as tg:
            lane = [tg.create_task(self._worker(first_only=True), name=f"hook-stop-worker-{n}")
                    for n in range(self._max_concurrent)]
            try:
                async with asyncio.timeout(timeout_s):
                    await self._queue.join()
                done = True
            except TimeoutError:
                done = False
            for task in lane:
                task.cancel()
        if not done:
            log.warning("stopping: %d hook runs (%d of them vm-offline) still queued after "
                        "%.1fs; not run", len(self._queue), self._queue.first_waiting,
                        timeout_s)
        return done

    async def _worker(self, first_only: bool = False) -> None:
        """One run at a time; nothing a hook does can end the worker (or the daemon)."""
        while True:
            job = await self._queue.get(first_only)
            self.started_total += 1
            started = time.monotonic()
            try:
                result = await self._execute(job)
            except Exception as exc:
                log.exception("hook %s for VM %s: unexpected failure", job.command[0], job.vm)
                result = outcome(job.kind, job.command, exit_code=None, timed_out=False,
                                 error=f"internal error: {exc!r}",
                                 duration_s=time.monotonic() - started)
            finally:
                self._queue.done()
            self._report(job, result)

    def _report(self, job: HookJob, result: HookOutcome) -> None:
        if not result.failed:
            log.debug("hook %s for VM %s: %s ok in %ss", job.kind, job.vm, job.command[0],
                      result.duration_s)
            return
        try:
            self._on_result(job.kind, job.vm, job.command, result)
        except Exception:
            log.exception("hook result callback failed for %s", job.command[0])

    async def _execute(self, job: HookJob) -> HookOutcome:
        """Run one job with the hook's environment (``sinks.hook_process``)."""
        env = hook_environment(job.kind, job.vm, self._host, self._path)
        return await execute(job, env=env, sweeper=self._sweeper)
