"""One hook run: start the command, feed its stdin, wait for its own exit (shell).

Stage: sink (``sinks.hooks`` queues runs; ``sinks.hook_workers`` calls ``execute`` for
each). The command starts in a session of its own with the JSON on stdin, stdout on
``/dev/null`` and stderr on a pipe, through the loop's low-level ``subprocess_exec`` so
that the transport can be closed when the run ends.

A run ends when the hook itself exits (or is killed at its timeout), never when its
pipes reach end-of-file. Under uvloop the children of a hook inherit extra copies of
the hook's stdin and stderr: uvloop marks the child's ends inheritable, libuv
``dup2``s them onto 0-2 without closing the originals, and uvloop does not implement
``close_fds``. A child started as ``setsid cmd >/dev/null 2>&1 &`` therefore still
holds the write end of the hook's stderr, and waiting for EOF would wait for that
child. So stderr is read only until the hook has exited (plus ``STDERR_DRAIN_S`` for
what it wrote just before), keeping a bounded tail; then the pipes are closed.

At the hook's timeout whatever is left in its process group is killed, also when the
hook itself exited earlier (``GroupSweeper``): only a child that detached itself
(``setsid``) outlives the timeout.

This module must not:
* run a shell, search PATH, or pass more environment than it is given;
* wait for end-of-file on a pipe a child may hold, or keep more than
  ``STDERR_TAIL_BYTES`` of stderr;
* let a hook (or its process group) outlive its timeout, nor leave a process,
  transport or pipe behind when cancelled (the daemon is stopping);
* put a control character of a hook's stderr into a result (``printable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from qmpdirty.config.hooks import HookTrigger
from qmpdirty.sinks.hook_queue import HookJob

#: How much of a failing hook's stderr is kept for its result.
STDERR_TAIL_BYTES = 1024
#: After the hook's exit: how long to wait for the rest of its stderr (EOF comes at
#: once unless a child holds a copy of the pipe).
STDERR_DRAIN_S = 0.2
#: How long to wait for a killed hook to be reaped.
KILL_GRACE_S = 5.0
#: Longest error text taken from stderr.
ERROR_LINE_CHARS = 300

#: C0 and C1 control characters and DEL, except tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """How one run ended: the ``vm/<vm>/hook`` payload's own fields (docs/hooks.md)."""

    event: HookTrigger
    command: tuple[str, ...]
    exit_code: int | None  # negative: killed by that signal; None: never started
    timed_out: bool
    error: str | None
    duration_s: float

    @property
    def failed(self) -> bool:
        """A run failed unless it exited 0 in time."""
        return self.exit_code != 0 or self.timed_out or self.error is not None


def outcome(
    kind: HookTrigger, command: Sequence[str], *, exit_code: int | None, timed_out: bool,
    error: str | None, duration_s: float,
) -> HookOutcome:
    """The result of one run, its duration rounded to the millisecond."""
    return HookOutcome(kind, tuple(command), exit_code, timed_out, error, round(duration_s, 3))


def printable(text: str) -> str:
    """``text`` with every control character but tab and newline replaced by U+FFFD:
    a hook's stderr reaches logs and MQTT payloads, where NULs and escapes do harm."""
    return _CONTROL.sub("\ufffd", text)


class _HookProtocol(asyncio.SubprocessProtocol):
    """Keeps the tail of stderr; tells when the hook exited and when stderr closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tail = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.stderr_closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd == 2:
            self.tail.extend(data)
            del self.tail[:-STDERR_TAIL_BYTES]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 2 and not self.stderr_closed.done():
            self.stderr_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class GroupSweeper:
    """Kills, at a hook's deadline, what the hook left in its process group after it
    exited (a child that ``setsid`` may not have detached yet at the hook's exit, so
    the group is not killed then). ``sweep_all`` does it at once, when the runner
    stops."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.TimerHandle] = {}

    def schedule(self, pgid: int, deadline: float) -> None:
        """Sweep group ``pgid`` at ``deadline`` (``time.monotonic()``)."""
        loop = asyncio.get_running_loop()
        old = self._pending.pop(pgid, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, deadline - time.monotonic())
        self._pending[pgid] = loop.call_later(delay, self._sweep, pgid)

    def sweep_all(self) -> None:
        for pgid in list(self._pending):
            self._pending.pop(pgid).cancel()
            _kill_leftovers(pgid)

    def _sweep(self, pgid: int) -> None:
        self._pending.pop(pgid, None)
        _kill_leftovers(pgid)


def _kill_leftovers(pgid: int) -> None:
    """SIGKILL what is left in the group of a hook that has exited and been reaped.
    A process ``pgid`` that exists now is another process that reused the number
    (its group may be its own): then nothing is killed."""
    if os.path.exists(f"/proc/{pgid}"):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def execute(job: HookJob, *, env: dict[str, str], sweeper: GroupSweeper) -> HookOutcome:
    """Run ``job`` once: start, feed, wait for its exit (killing its process group at
    the timeout), close the pipes; what it left in its group dies at the deadline."""
    kind, command, timeout_s = job.kind, job.command, job.timeout_s
    started = time.monotonic()
    try:
        transport, proto = await _spawn(command, env)
    except (OSError, ValueError) as exc:
        return outcome(kind, command, exit_code=None, timed_out=False,
                       error=_spawn_error(command[0], exc),
                       duration_s=time.monotonic() - started)
    pid = transport.get_pid()
    try:
        _feed(transport, job.stdin)
        timed_out = await _wait_for_exit(transport, proto, timeout_s)
        code = transport.get_returncode()
    except asyncio.CancelledError:  # the daemon is stopping: leave nothing behind
        await asyncio.shield(_kill_group(transport, proto))
        raise
    finally:
        _close(transport)
    if not timed_out:
        sweeper.schedule(pid, started + timeout_s)
    return outcome(kind, command, exit_code=code, timed_out=timed_out,
                   error=_run_error(code, timed_out, timeout_s, bytes(proto.tail)),
                   duration_s=time.monotonic() - started)


async def _spawn(command: Sequence[str], env: dict[str, str]
                 ) -> tuple[asyncio.SubprocessTransport, _HookProtocol]:
    """Start ``command`` in a session of its own. Shielded: cancelled mid-spawn, the
    process is still killed and its transport closed."""
    loop = asyncio.get_running_loop()
    spawning = loop.create_task(loop.subprocess_exec(
        lambda: _HookProtocol(loop), *command, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd="/",
        start_new_session=True,
    ), name=f"hook-spawn:{command[0]}")
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            transport, proto = await spawning
            await _kill_group(transport, proto)
            _close(transport)
        raise


def _feed(transport: asyncio.SubprocessTransport, data: bytes) -> None:
    """Write the payload and close stdin; the transport buffers what the hook has not
    read yet (a hook that does not read it is not an error)."""
    pipe = _stdin_of(transport)
    if pipe is None:
        return
    try:
        pipe.write(data)
        pipe.close()
    except (OSError, RuntimeError):
        # the hook exited or closed stdin first: BrokenPipeError / ConnectionResetError
        # under asyncio, RuntimeError "handler is closed" under uvloop (the daemon's loop)
        pass


async def _wait_for_exit(transport: asyncio.SubprocessTransport, proto: _HookProtocol,
                         timeout_s: float) -> bool:
    """Wait for the hook's own exit, then briefly for the rest of its stderr; on
    timeout kill its process group. Returns whether it timed out."""
    done, _ = await asyncio.wait({proto.exited}, timeout=timeout_s)
    if not done:
        await _kill_group(transport, proto)
    await asyncio.wait({proto.stderr_closed}, timeout=STDERR_DRAIN_S)
    return not done


async def _kill_group(transport: asyncio.SubprocessTransport, proto: _HookProtocol) -> None:
    """SIGKILL the hook's process group (it leads its own session) and wait for it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(transport.get_pid(), signal.SIGKILL)
    await asyncio.wait({proto.exited}, timeout=KILL_GRACE_S)


def _close(transport: asyncio.SubprocessTransport) -> None:
    """The run is over: drop unread stdin, close the pipes (the hook has exited or
    been killed). Must not raise: an error here would replace the cancellation of a
    stopping daemon, and the worker would carry on. (``abort()`` of a pipe already
    closed fails under asyncio: only a pipe with unwritten data is aborted.)"""
    stdin = _stdin_of(transport)
    with contextlib.suppress(Exception):
        if stdin is not None and stdin.get_write_buffer_size():
            stdin.abort()
    with contextlib.suppress(Exception):
        transport.close()


def _stdin_of(transport: asyncio.SubprocessTransport) -> asyncio.WriteTransport | None:
    """The hook's stdin pipe (uvloop's pipe transports do not subclass asyncio's)."""
    return cast(asyncio.WriteTransport | None, transport.get_pipe_transport(0))


def _spawn_error(executable: str, exc: OSError | ValueError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"executable not found: {executable}"
    if isinstance(exc, PermissionError):
        return f"cannot execute {executable}: permission denied"
    if isinstance(exc, OSError):
        return f"cannot start {executable}: {exc.strerror or exc}"
    return f"cannot start {executable}: {exc}"


def _run_error(code: int | None, timed_out: bool, timeout_s: float, tail: bytes) -> str | None:
    """What went wrong, with the last line of stderr (control characters replaced)."""
    if timed_out:
        return f"timed out after {timeout_s:g}s; killed"
    if code == 0:
        return None
    why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    last = printable(tail.decode("utf-8", "replace")).strip().splitlines()
    return f"{why}: {last[-1].strip()[:ERROR_LINE_CHARS]}" if last else why
