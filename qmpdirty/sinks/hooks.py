"""Hooks: run the operator's executables on daemon events (shell, a sink beside MQTT).

Stage: sink. The daemon calls ``HookRunner.fire(kind, vm, payload)`` where it
publishes telemetry (``fire_kind`` when its kind is already a ``HookKind``); it only
queues (bounded, the oldest run is dropped on
overflow, counted and logged) and returns. ``HookRunner.run()`` is a pool of
``[hooks] max_concurrent`` workers, owned by the daemon's TaskGroup, each starting one
``[[hook]]`` command at a time with ``asyncio.create_subprocess_exec``.

This module must not:
* run a shell or search PATH for the executable (commands are absolute argv lists);
* pass the daemon's environment (a hook sees ``QMPDIRTY_EVENT``, ``QMPDIRTY_VM``,
  ``QMPDIRTY_HOST`` and ``PATH`` only) or put a VM name anywhere but an environment
  value and the JSON on stdin;
* block or raise in ``fire``, or let a slow hook delay telemetry;
* let a hook (or its children: each runs in its own session) outlive its timeout.
Every failure (exit status, timeout, missing executable) goes to ``on_result`` as a
``HookOutcome``.
See docs/hooks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeGuard, get_args

from qmpdirty.config import Config, HookConfig
from qmpdirty.config.sections import HookKind
from qmpdirty.telemetry.topics import sanitise

log = logging.getLogger(__name__)

#: The event kinds a hook can name (besides ``*``, which matches them all).
HOOK_EVENTS: tuple[HookKind, ...] = get_args(HookKind)
#: PATH given to hooks when the daemon itself has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: How much of a failing hook's stderr is kept for its result.
STDERR_TAIL_BYTES = 1024
#: How long to wait for a killed hook to be reaped.
KILL_GRACE_S = 5.0



@dataclass(frozen=True, slots=True)
class HookOutcome:
    """How one run ended: the ``vm/<vm>/hook`` payload's own fields (docs/hooks.md)."""

    event: HookKind
    command: tuple[str, ...]
    exit_code: int | None  # negative: killed by that signal; None: never started
    timed_out: bool
    error: str | None
    duration_s: float

    @property
    def failed(self) -> bool:
        """A run failed unless it exited 0 in time."""
        return self.exit_code != 0 or self.timed_out or self.error is not None


#: ``on_result(kind, vm, command, outcome)``, called for failed runs only.
OnResult = Callable[[HookKind, str, tuple[str, ...], HookOutcome], None]


@dataclass(frozen=True, slots=True)
class HookJob:
    """One queued run of one command."""

    kind: HookKind
    vm: str
    command: tuple[str, ...]
    timeout_s: float
    stdin: bytes


def is_hook_kind(kind: str) -> TypeGuard[HookKind]:
    """``kind`` is one of ``HOOK_EVENTS`` (for callers that hold a plain string)."""
    return kind in HOOK_EVENTS


def matching(hooks: Sequence[HookConfig], kind: HookKind) -> list[HookConfig]:
    """The configured hooks that run on ``kind`` (their own kind or ``*``), in order."""
    return [h for h in hooks if h.event in (kind, "*")]


def hook_environment(kind: HookKind, vm: str, host: str, path: str) -> dict[str, str]:
    """The whole environment of a hook: nothing of the daemon's leaks but PATH."""
    return {"QMPDIRTY_EVENT": kind, "QMPDIRTY_VM": vm, "QMPDIRTY_HOST": host, "PATH": path}


def outcome(
    kind: HookKind, command: Sequence[str], *, exit_code: int | None, timed_out: bool,
    error: str | None, duration_s: float,
) -> HookOutcome:
    """The result of one run, its duration rounded to the millisecond."""
    return HookOutcome(kind, tuple(command), exit_code, timed_out, error, round(duration_s, 3))


class HookRunner:
    """A bounded queue of hook runs and the worker pool that executes them."""

    def __init__(self, cfg: Config, on_result: OnResult) -> None:
        self._cfg = cfg.hooks
        self._hooks = tuple(cfg.hook)
        self._on_result = on_result
        self._host = sanitise(cfg.host.resolved_name)
        self._path = os.environ.get("PATH") or DEFAULT_PATH
        self._queue: asyncio.Queue[HookJob] = asyncio.Queue(maxsize=self._cfg.queue_size)
        self.dropped_total = 0
        self.started_total = 0

    @property
    def queued(self) -> int:
        """Runs waiting for a worker."""
        return self._queue.qsize()

    def fire(self, kind: str, vm: str, payload: Mapping[str, object]) -> None:
        """``fire_kind`` for a kind held as a string: one that is not a ``HookKind`` is
        logged and ignored."""
        if not is_hook_kind(kind):
            log.error("hook event %r is not one of %s; ignored", kind, ", ".join(HOOK_EVENTS))
            return
        self.fire_kind(kind, vm, payload)

    def fire_kind(self, kind: HookKind, vm: str, payload: Mapping[str, object]) -> None:
        """Queue every hook for ``kind``; synchronous, never blocks, never raises.

        ``payload`` is written as JSON on the hooks' stdin. Call it from the event
        loop's thread.
        """
        try:
            self._fire(kind, vm, payload)
        except Exception:  # a hook problem must never reach the telemetry path
            log.exception("hooks for %s on VM %s were not queued", kind, vm)

    def fire_body(self, kind: HookKind, vm: str, body: bytes) -> None:
        """``fire_kind`` with the stdin document already serialised (the daemon hands
        over a payload exactly as it was published: nothing is parsed back)."""
        try:
            self._queue_runs(kind, vm, body.rstrip(b"\n") + b"\n")
        except Exception:  # a hook problem must never reach the telemetry path
            log.exception("hooks for %s on VM %s were not queued", kind, vm)

    def _fire(self, kind: HookKind, vm: str, payload: Mapping[str, object]) -> None:
        body = json.dumps(payload, default=str, separators=(",", ":")).encode() + b"\n"
        self._queue_runs(kind, vm, body)

    def _queue_runs(self, kind: HookKind, vm: str, body: bytes) -> None:
        hooks = matching(self._hooks, kind)
        if not hooks:
            return
        for hook in hooks:
            timeout_s = hook.timeout_s if hook.timeout_s is not None else self._cfg.timeout_s
            self._enqueue(HookJob(kind, vm, tuple(hook.command), timeout_s, body))

    def _enqueue(self, job: HookJob) -> None:
        """Put ``job``; when full, the oldest queued run makes room (counted, logged)."""
        if self._queue.full():
            dropped = self._queue.get_nowait()
            self._queue.task_done()
            self.dropped_total += 1
            if self.dropped_total == 1 or self.dropped_total % 100 == 0:
                log.warning("hook queue full (%d): dropped the oldest run (%s %s for %s); "
                            "%d dropped so far", self._cfg.queue_size, dropped.kind,
                            dropped.command[0], dropped.vm, self.dropped_total)
        self._queue.put_nowait(job)

    async def run(self) -> None:
        """Run queued hooks, ``max_concurrent`` at a time, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for n in range(self._cfg.max_concurrent):
                tg.create_task(self._worker(), name=f"hook-worker-{n}")

    async def _worker(self) -> None:
        """One run at a time; nothing a hook does can end the worker (or the daemon)."""
        while True:
            job = await self._queue.get()
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
                self._queue.task_done()
            self._report(job, result)

    async def finish(self, timeout_s: float) -> bool:
        """At stop: wait until every queued run (``vm-offline`` for every VM) has run,
        at most ``timeout_s``; False (and a warning) when some had not."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
            return True
        except TimeoutError:
            log.warning("stopping: %d hook runs still queued after %.1fs; not run",
                        self._queue.qsize(), timeout_s)
            return False

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
        """Start one command, feed it, wait for it (killing it at the timeout)."""
        started = time.monotonic()
        env = hook_environment(job.kind, job.vm, self._host, self._path)
        try:
            proc = await _spawn(job.command, env)
        except (OSError, ValueError) as exc:
            return outcome(job.kind, job.command, exit_code=None, timed_out=False,
                           error=_spawn_error(job.command[0], exc),
                           duration_s=time.monotonic() - started)
        try:
            timed_out, tail = await _supervise(proc, job.stdin, job.timeout_s)
        except asyncio.CancelledError:  # the daemon is stopping: leave nothing behind
            await _kill_and_reap(proc)
            raise
        code = proc.returncode
        return outcome(job.kind, job.command, exit_code=code, timed_out=timed_out,
                       error=_run_error(code, timed_out, job.timeout_s, tail),
                       duration_s=time.monotonic() - started)


async def _spawn(command: Sequence[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start ``command`` in a session of its own. Shielded: cancelled mid-spawn, the
    process is still killed (else its children would keep its pipes, and us, waiting)."""
    spawning = asyncio.get_running_loop().create_task(asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env, cwd="/", start_new_session=True,
    ), name=f"hook-spawn:{command[0]}")
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await _kill_and_reap(await spawning)
        raise


async def _supervise(
    proc: asyncio.subprocess.Process, data: bytes, timeout_s: float
) -> tuple[bool, bytes]:
    """Feed stdin, keep the tail of stderr, wait; on timeout kill the whole session.

    Returns (timed out, stderr tail). A child that keeps the hook's stderr open
    counts as the hook still running.
    """
    tail = bytearray()
    try:
        async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as tg:
            if proc.stdin is not None:
                tg.create_task(_feed(proc.stdin, data), name="hook-stdin")
            if proc.stderr is not None:
                tg.create_task(_read_tail(proc.stderr, tail), name="hook-stderr")
            await proc.wait()
        return False, bytes(tail)
    except TimeoutError:
        await _kill_and_reap(proc)
        return True, bytes(tail)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write the payload; a hook that does not read it is not an error."""
    try:
        stdin.write(data)
        await stdin.drain()
    except (OSError, RuntimeError):
        # the hook exited or closed stdin first: BrokenPipeError / ConnectionResetError
        # under asyncio, RuntimeError "handler is closed" under uvloop (the daemon's loop)
        pass
    finally:
        stdin.close()


async def _read_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    while chunk := await stream.read(4096):
        tail.extend(chunk)
        del tail[:-STDERR_TAIL_BYTES]


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the hook's session (it leads its own process group), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await proc.wait()


def _spawn_error(executable: str, exc: OSError | ValueError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"executable not found: {executable}"
    if isinstance(exc, PermissionError):
        return f"cannot execute {executable}: permission denied"
    if isinstance(exc, OSError):
        return f"cannot start {executable}: {exc.strerror or exc}"
    return f"cannot start {executable}: {exc}"


def _run_error(code: int | None, timed_out: bool, timeout_s: float, tail: bytes) -> str | None:
    if timed_out:
        return f"timed out after {timeout_s:g}s; killed"
    if code == 0:
        return None
    why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    last = tail.decode("utf-8", "replace").strip().splitlines()
    return f"{why}: {last[-1][:300]}" if last else why
