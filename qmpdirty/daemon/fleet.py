"""The fleet: one supervisor per QMP address, the server-mode acceptor, discovery (shell).

Client mode: a supervisor connects to its address, runs a ``VmPipeline`` until
QEMU hangs up, then reconnects with exponential backoff and jitter, forever, until
cancelled (the address vanished from discovery or the daemon stops).
Server mode: every accepted connection runs a ``VmPipeline`` of its own.
Either way ``run_session`` is the firewall: nothing that goes wrong in one VM's
session escapes it, so one VM never takes another down.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import random
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qmpdirty.cancel import raise_if_cancelled
from qmpdirty.config.address import QmpAddress
from qmpdirty.config.load import Config
from qmpdirty.daemon.pipeline import VmPipeline
from qmpdirty.daemon.starts import StartSlot
from qmpdirty.daemon.tally import Tally
from qmpdirty.daemon.vm import Context, SessionOwner, VmPublisher
from qmpdirty.errors import QmpClosedError, QmpConnectError, QmpError
from qmpdirty.qmp.listener import QmpListener
from qmpdirty.qmp.session import QmpSession
from qmpdirty.telemetry.topics import sanitise

log = logging.getLogger(__name__)

#: How often repeated warnings are summarised (``Tally``): a client-mode peer's
#: failures, server-mode connections that fail.
SUMMARY_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """A QMP address to watch, with the name to use when QEMU has no ``-name``."""

    address: QmpAddress
    fallback_name: str
    source: str  # "config" or "glob"


def configured(cfg: Config) -> dict[str, Target]:
    """The static ``[[vm]]`` entries (each address parsed: ~5 ms per 1,000)."""
    found: dict[str, Target] = {}
    for entry in cfg.vm:
        addr = entry.address
        found[str(addr)] = Target(addr, entry.name or addr.stem, "config")
    return found


def found_by_globs(globs: Sequence[str]) -> dict[str, Target]:
    """Every UNIX socket matching a discovery glob (reads the file system)."""
    found: dict[str, Target] = {}
    for pattern in globs:
        for match in sorted(glob.glob(pattern)):
            path = Path(match)
            if _is_socket(path):
                addr = QmpAddress(kind="unix", path=path)
                found.setdefault(str(addr), Target(addr, addr.stem, "glob"))
    return found


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


async def open_session(ctx: Context, target: QmpAddress | socket.socket, label: str) -> QmpSession:
    q = ctx.cfg.qmp
    return await QmpSession.open(
        target, policy=ctx.policy, command_timeout_s=q.command_timeout_s,
        connect_timeout_s=q.connect_timeout_s, event_queue_size=q.event_queue_size, label=label,
    )


async def run_session(
    ctx: Context, session: QmpSession, label: str, fallback_name: str, pid: int | None, *,
    slot: StartSlot | None = None, place: str | None = None,
) -> str | None:
    """Identify the VM and run its pipeline until the session ends. Never raises (but
    cancel): this is the firewall, the one place that catches whatever one VM's
    session raises, so that it never reaches the fleet and another VM.

    Returns why the session failed - the peer broke the protocol (malformed or
    oversized messages, replies of the wrong shape, errors to the queries qmpdirty
    needs), or qmpdirty itself failed - or None when QEMU simply went away. A failure
    publishes ``error``, any other end ``offline``. The pipeline reports a migration
    in flight ``lost`` itself, inside this firewall; what is left to publish here
    renders nothing that can fail. ``slot`` (``daemon.starts``) is given back once
    the pipeline has started, or when the session ends before. ``place``: the VM's
    address in client mode (``SessionOwner.place``)."""
    owner = SessionOwner(label, place)
    pipeline: VmPipeline | None = None
    failure: str | None = None
    try:
        pipeline = await VmPipeline.identify(ctx, session, owner, fallback_name=fallback_name,
                                             pid=pid)
        await pipeline.run(started=slot.release if slot is not None else None)
    except* QmpClosedError:
        pass
    except* QmpError as group:
        failure = str(group.exceptions[0])
    except* Exception as group:
        log.exception("%s: VM task failed; other VMs are unaffected", label)
        failure = f"internal error: {group.exceptions[0]!r}"
    finally:
        if slot is not None:
            slot.release()
        failure = failure or await session.close()
        _publish_end(ctx, pipeline, owner, fallback_name, failure)
    raise_if_cancelled()  # the handlers above may have taken a cancelled group's errors
    return failure


def _publish_end(ctx: Context, pipeline: VmPipeline | None, owner: SessionOwner,
                 fallback_name: str, failure: str | None) -> None:
    """``offline``, or ``error`` with the reason - under the VM's name or, if it was
    never identified, the name it would have had - and the name is free again."""
    vm = pipeline.vm if pipeline is not None else None
    if failure is not None:
        vm = vm or ctx.claim(sanitise(fallback_name), owner, owner.key(None))
        VmPublisher(ctx, vm).error(failure, owner.label)
    elif pipeline is not None:
        pipeline.offline()
    if vm is not None:
        ctx.release(vm, owner)


async def supervise(ctx: Context, target: Target) -> None:
    """Client mode: connect, watch, reconnect with backoff + jitter, until cancelled.
    Each connection waits for a ``StartSlot`` first (``daemon.starts``).

    The backoff starts afresh only after a session that ended without a failure: a peer
    that greets and then breaks the protocol is retried ever more slowly, like one that
    does not answer at all. A failure is logged when it differs from the last one, at
    most once per ``SUMMARY_INTERVAL_S`` (``Tally``: a peer whose garbage changes every
    time still writes one line per interval); a repeat only at debug level."""
    q = ctx.cfg.qmp
    delay = q.reconnect_initial_s
    label = str(target.address)
    failures = Tally(log, label, SUMMARY_INTERVAL_S)
    last: str | None = None  # the failure logged last: a repeat is logged at debug only
    while True:
        failure: str | None = None
        slot = await ctx.starts.enter()
        try:
            session = await open_session(ctx, target.address, label)
        except QmpConnectError as exc:
            failure = f"cannot connect: {exc}"
            if exc.protocol:  # something answered, but not in QMP
                _publish_end(ctx, None, SessionOwner(label, label), target.fallback_name,
                             str(exc))
        except Exception as exc:
            log.exception("%s: unexpected error while connecting (retrying)", label)
            failure = repr(exc)
        else:
            failure = await run_session(ctx, session, label, target.fallback_name,
                                        session.peer_pid, slot=slot, place=label)
            if failure is None:
                delay = q.reconnect_initial_s
            else:
                failure = f"QMP peer misbehaved: {failure}"
        finally:
            slot.release()
        if failure is not None and failure != last:
            failures.note(f"{failure} (retrying)")
        elif failure is not None:
            log.debug("%s: %s (retrying)", label, failure)
        last = failure
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        failures.flush_due()
        delay = min(delay * 2, q.reconnect_max_s)


#: Connections accepted in server mode that have not finished the QMP greeting yet; more
#: wait in the listen backlog (each holds a descriptor until ``connect_timeout_s``).
MAX_HANDSHAKES = 64


async def serve(ctx: Context, listener: QmpListener) -> None:
    """Server mode: accept QEMUs dialling in; each runs its own session task.

    Bounded against a peer that opens connections and says nothing: at most
    ``MAX_HANDSHAKES`` are waiting for their greeting at once (each for at most
    ``connect_timeout_s``), descriptor exhaustion only slows accepting (the listener
    backs off), and failures are summarised (``Tally``) instead of logged one by one."""
    label = f"server:{listener.path}"
    handshakes = asyncio.Semaphore(MAX_HANDSHAKES)
    failed = Tally(log, f"{label}: connection failed the QMP handshake", SUMMARY_INTERVAL_S)
    refused = Tally(log, f"{label}: out of file descriptors, accepting more slowly",
                    SUMMARY_INTERVAL_S)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_summaries(listener, failed, refused), name="server-summaries")
        while True:
            await handshakes.acquire()
            try:
                conn, cred = await listener.accept()
            except BaseException:
                handshakes.release()
                raise
            tg.create_task(_accepted(ctx, conn, cred.pid, label, handshakes=handshakes,
                                     failed=failed),
                           name=f"server-session-pid{cred.pid}")


async def _summaries(listener: QmpListener, failed: Tally, refused: Tally) -> None:
    """Every ``SUMMARY_INTERVAL_S``: what was counted meanwhile, one line per kind."""
    seen = 0
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL_S)
        if listener.refused != seen:
            refused.note(f"{listener.refused - seen} accept() attempts: "
                         f"{listener.last_refusal}; raise LimitNOFILE")
            seen = listener.refused
        failed.flush()
        refused.flush()


async def _accepted(ctx: Context, conn: socket.socket, pid: int, label: str, *,
                    handshakes: asyncio.Semaphore, failed: Tally) -> None:
    where = f"{label} pid {pid}"
    try:
        session = await open_session(ctx, conn, where)
    except QmpError as exc:
        failed.note(f"pid {pid}: {exc}")
        conn.close()
        return
    finally:
        handshakes.release()
    try:  # the slot only once greeted: connections that never greet cannot hold it
        slot = await ctx.starts.enter()
    except asyncio.CancelledError:
        await asyncio.shield(session.close())
        raise
    failure = await run_session(ctx, session, f"{label} (pid {pid})", f"pid-{pid}", pid,
                                slot=slot)
    if failure is not None:
        failed.note(f"pid {pid}: QMP peer misbehaved: {failure}")


class Fleet:
    """Keeps exactly one supervisor task per discovered target."""

    def __init__(self, ctx: Context, tg: asyncio.TaskGroup) -> None:
        self.ctx = ctx
        self._tg = tg
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._configured: tuple[Config, dict[str, Target]] | None = None

    async def reconcile(self, cfg: Config) -> None:
        """Start supervisors for new targets, cancel those whose target went away.

        Runs every ``rescan_interval_s``: the ``[[vm]]`` entries are parsed once per
        configuration (1,000 of them held the loop ~5-18 ms each time), and the globs
        are looked up in a worker thread (a stat per socket)."""
        if self._configured is None or self._configured[0] is not cfg:
            self._configured = (cfg, configured(cfg))
        globs = cfg.discovery.globs
        wanted = {**(await asyncio.to_thread(found_by_globs, globs) if globs else {}),
                  **self._configured[1]}
        for key, task in list(self._tasks.items()):
            if key not in wanted or task.done():
                if key not in wanted:
                    log.info("%s: no longer configured or present; stopping", key)
                task.cancel()
                del self._tasks[key]
        for key, target in wanted.items():
            if key not in self._tasks:
                self._tasks[key] = self._tg.create_task(supervise(self.ctx, target),
                                                        name=f"supervise:{key}")

    def stop_all(self) -> list[asyncio.Task[None]]:
        """Cancel every supervisor; return the tasks to await."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        self._tasks.clear()
        return tasks

    def __len__(self) -> int:
        return len(self._tasks)
