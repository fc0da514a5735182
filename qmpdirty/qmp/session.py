"""One QMP session with a timeout on every command and a bounded event queue (shell).

Stage: shell; the product's only module that imports ``qemu.qmp`` (an import-linter
contract; the demo's VFIO stand-in has a client of its own). Wraps ``QMPClient``:
* library errors become qmpdirty's (``errors.py``) at this boundary;
* every command passes the allow-list (``commands.CommandPolicy``) and a timeout
  (a SIGSTOPped QEMU never answers);
* events go to one bounded queue. ``QMPClient``'s default listener keeps every
  event forever and cannot be removed, so ``_BoundedClient`` replaces the event
  fan-out itself (the ``Events._event_dispatch`` hook of qemu.qmp 0.0.6, pinned);
* a message that is JSON but beyond what Python's ``json`` reads (an integer of more
  than 4,300 digits, nesting past the recursion limit) does not end the session: an
  event is replaced by an ``UnreadableEvent`` in the queue (``next_event`` raises
  ``QmpReplyError`` for it, in its place), a reply fails its command with
  ``QmpReplyError``. Only malformed JSON and oversized messages end the session
  (``_BoundedClient._do_recv`` overrides the library's reader, 0.0.6);
* ``wait_closed`` returns when QEMU hangs up, so the supervisor notices at once;
* on a UNIX socket (client or server mode) ``peer_pid`` is QEMU's pid, from the
  kernel (``SO_PEERCRED``): the session connects the socket itself for that.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from qemu.qmp import ExecInterruptedError, ExecuteError, QMPClient, QMPError, Runstate
from qemu.qmp.error import ProtocolError
from qemu.qmp.message import Message

from qmpdirty.config.address import QmpAddress
from qmpdirty.errors import (
    QmpClosedError,
    QmpCommandError,
    QmpConnectError,
    QmpReplyError,
    QmpTimeoutError,
)
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.listener import peer_cred
from qmpdirty.qmp.wire import head_of

log = logging.getLogger(__name__)

#: Largest QMP message accepted (``query-qmp-schema`` is ~200 KiB; 10 MiB is ample).
READ_LIMIT = 10 * 1024 * 1024
#: An unreadable message longer than this is looked into in a worker thread.
_SCAN_INLINE = 64 * 1024


@dataclass(frozen=True, slots=True)
class UnreadableEvent:
    """An event that could not be read, in the queue in its place."""

    event: str | None  # its name, when that much could be read
    reason: str


class _Oversized(ProtocolError, QmpClosedError):
    """A message longer than ``READ_LIMIT``: the stream cannot be framed any more, the
    session ends (raised inside the library's reader, so one of its errors too)."""


class _UnreadableReply(ExecInterruptedError, QmpReplyError):
    """The reply to a command in flight could not be read: the command fails (handed
    to the library's waiting ``execute``, so one of its errors too)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _BoundedClient(QMPClient):
    """A QMPClient whose events go to one bounded queue; overflow drops the oldest,
    whose reader survives messages Python's json cannot read, and whose message hooks
    do not serialise messages for a disabled debug log."""

    def __init__(self, name: str, queue_size: int) -> None:
        super().__init__(name, readbuflen=READ_LIMIT)
        self.event_queue: asyncio.Queue[Message | UnreadableEvent] = \
            asyncio.Queue(maxsize=queue_size)
        self.dropped_events = 0

    async def _event_dispatch(self, msg: Message) -> None:
        self._enqueue(msg)

    def _enqueue(self, item: Message | UnreadableEvent) -> None:
        if self.event_queue.full():
            self.event_queue.get_nowait()
            self.dropped_events += 1
        self.event_queue.put_nowait(item)

    async def _do_recv(self) -> Message:
        """One message, as the library's reader (0.0.6) reads it, except that valid
        JSON Python's ``json`` refuses (``ValueError``: an integer of more than 4,300
        digits; ``RecursionError``: deep nesting) is set aside and the next one read.
        (Malformed JSON raises the library's ``DeserializationError``, no ValueError.)"""
        while True:
            try:
                raw = await self._readline()
            except ValueError as exc:  # StreamReader: no newline within the limit
                raise _Oversized(f"message larger than {READ_LIMIT // 2**20} MiB") from exc
            try:
                return Message(raw, eager=True)
            except (ValueError, RecursionError) as exc:
                reason = _unreadable(exc)
                if self.runstate != Runstate.RUNNING:  # the greeting or negotiation
                    raise ProtocolError(reason) from exc
                await self._set_aside(raw, reason)

    async def _set_aside(self, raw: bytes, reason: str) -> None:
        """Fail the command an unreadable reply answers; queue an unreadable event (or
        anything else: a reply to no command in flight is dropped, the spec says)."""
        head = head_of(raw) if len(raw) <= _SCAN_INLINE else \
            await asyncio.to_thread(head_of, raw)
        waiting = self._pending.get(head.id) if head.event is None and head.id else None
        if waiting is not None:
            await waiting.put(_UnreadableReply(reason))
        elif head.event is not None or head.id is None:
            self._enqueue(UnreadableEvent(head.event or None, reason))

    # The library's message hooks only log, but build ``str(msg)`` (a full JSON dump)
    # before the logger decides: at 1,000 VMs that was the daemon's largest CPU cost.
    def _cb_outbound(self, msg: Message) -> Message:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("--> %s", msg)
        return msg

    def _cb_inbound(self, msg: Message) -> Message:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<-- %s", msg)
        return msg


class QmpSession:
    """A live, negotiated QMP connection to one QEMU."""

    def __init__(self, client: _BoundedClient, policy: CommandPolicy, timeout_s: float,
                 peer_pid: int | None = None) -> None:
        self._client = client
        self._policy = policy
        self._timeout_s = timeout_s
        #: QEMU's pid (``SO_PEERCRED``) on a UNIX socket; None over TCP
        self.peer_pid = peer_pid
        #: ``time.monotonic()`` of the last reply (success or error): QEMU answers.
        self.answered_at = time.monotonic()
        #: Set (and ``stalled_at`` stamped) whenever a command times out.
        self.stalled = asyncio.Event()
        self.stalled_at = 0.0

    @classmethod
    async def open(
        cls,
        target: QmpAddress | socket.socket,
        *,
        policy: CommandPolicy,
        command_timeout_s: float,
        connect_timeout_s: float,
        event_queue_size: int,
        label: str,
    ) -> QmpSession:
        """Connect (or adopt an accepted socket), await the greeting and negotiate."""
        client = _BoundedClient(label, event_queue_size)
        pid: int | None = None
        try:
            async with asyncio.timeout(connect_timeout_s):
                where = await _connected(target)
                if isinstance(where, socket.socket):
                    pid = _peer_pid(where)  # before the library takes the socket over
                await client.connect(where)
        except asyncio.CancelledError:
            # the daemon is stopping: finish the library's own disconnect, or its
            # bottom-half task is left failing unobserved (RuntimeError under uvloop)
            await asyncio.shield(_quietly_disconnect(client))
            raise
        except TimeoutError as exc:
            await _quietly_disconnect(client)
            raise QmpConnectError(
                f"{label}: no QMP greeting within {connect_timeout_s:g}s; QEMU may be frozen "
                "or another client holds this monitor (QEMU serves one client per monitor)"
            ) from exc
        except QMPError as exc:
            await _quietly_disconnect(client)
            inner = getattr(exc, "exc", None)
            protocol = not isinstance(inner, OSError | EOFError)
            raise QmpConnectError(f"{label}: {_reason(exc)}", protocol=protocol) from exc
        except OSError as exc:  # connecting (``_connected`` closed its socket)
            raise QmpConnectError(f"{label}: {exc.strerror or exc}") from exc
        return cls(client, policy, command_timeout_s, pid)

    @property
    def dropped_events(self) -> int:
        """Events dropped because the queue was full (counted, logged by the caller)."""
        return self._client.dropped_events

    @property
    def is_open(self) -> bool:
        return self._client.runstate == Runstate.RUNNING

    async def execute(
        self, command: str, arguments: Mapping[str, object] | None = None,
        timeout_s: float | None = None,
    ) -> object:
        """Run one allowed command; its reply is unvalidated (see ``translate``)."""
        self._policy.check(command, arguments)
        limit = self._timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                reply = await self._client.execute(command, arguments)
        except TimeoutError as exc:
            self.stalled_at = time.monotonic()
            self.stalled.set()
            raise QmpTimeoutError(f"{command}: no reply within {limit:g}s") from exc
        except ExecuteError as exc:
            self.answered_at = time.monotonic()
            raise QmpCommandError(command, exc.error_class, str(exc)) from exc
        except _UnreadableReply as exc:
            self.answered_at = time.monotonic()
            raise QmpReplyError(f"{command}: unreadable reply: {exc.reason}") from exc
        except QMPError as exc:
            raise QmpClosedError(f"{command}: session closed ({_reason(exc)})") from exc
        self.answered_at = time.monotonic()
        return reply

    async def next_event(self) -> dict[str, object]:
        """The next event, in arrival order, as a plain dict (translate before use);
        ``QmpReplyError`` in place of an event that could not be read."""
        item = await self._client.event_queue.get()
        if isinstance(item, UnreadableEvent):
            raise QmpReplyError(f"event {item.event or '(unnamed)'}: {item.reason}")
        return dict(item)

    async def wait_closed(self) -> None:
        """Return once the connection is no longer running (QEMU exited or hung up)."""
        while self._client.runstate == Runstate.RUNNING:
            await self._client.runstate_changed()

    async def close(self) -> str | None:
        """Disconnect; return why the connection broke when it was a protocol error
        (malformed JSON, an oversized message...), None for a plain hang-up."""
        return await _quietly_disconnect(self._client)


async def _connected(target: QmpAddress | socket.socket) -> tuple[str, int] | socket.socket:
    """What ``QMPClient.connect`` takes: a UNIX socket connected here (its peer's
    credentials are the kernel's, read with ``SO_PEERCRED``), or a TCP address."""
    if isinstance(target, socket.socket):
        return target
    if target.kind != "unix":
        return (target.host, target.port)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, str(target.path))
    except BaseException:
        sock.close()
        raise
    return sock


def _peer_pid(sock: socket.socket) -> int | None:
    """QEMU's pid, if the kernel says (a closed socket does not)."""
    try:
        return peer_cred(sock).pid or None
    except OSError:
        return None


def _reason(exc: BaseException) -> str:
    inner = exc.__cause__ or getattr(exc, "exc", None)
    text = str(exc)
    if inner is not None and str(inner) and str(inner) not in text:
        text = f"{text}: {inner}"
    return text or type(exc).__name__


async def _quietly_disconnect(client: QMPClient) -> str | None:
    try:
        await client.disconnect()
    except EOFError:
        return None  # QEMU hung up: not an error of the protocol
    except (QMPError, OSError, ValueError, RuntimeError) as exc:
        # RuntimeError: uvloop's "handler is closed" for a transport already torn down
        log.debug("%s: disconnect after error: %s", client.name, _reason(exc))
        if isinstance(exc, ConnectionResetError | BrokenPipeError | RuntimeError):
            return None
        if isinstance(exc, _Oversized):
            return exc.error_message
        return _reason(exc)
    return None


def _unreadable(exc: ValueError | RecursionError) -> str:
    """Why json could not read a message that is JSON (for logs and counts)."""
    if isinstance(exc, RecursionError):
        return "nested deeper than Python's JSON reader allows"
    return f"unreadable: {str(exc).split(';')[0]}"  # "Exceeds the limit (4300 digits)..."



#: qemu.qmp 0.0.6's bottom-half coroutines whose failures it may leave unretrieved.
_LIBRARY_TASKS = ("_bh_disconnect", "_bh_loop_forever")


def quiet_library_quirks(loop: asyncio.AbstractEventLoop) -> None:
    """Demote two qemu.qmp 0.0.6 quirks from the loop's error handler to debug.

    After a reader error (a malformed or oversized message) ``_wait_disconnect``
    raises the first bottom-half error and leaves the disconnect task's own failure
    unretrieved (under uvloop: "handler is closed" while flushing a closed
    transport), and a client abandoned at shutdown leaves its reader task pending.
    qmpdirty has already reported the session's end; these are noise. Anything else
    still reaches the default handler."""
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        task = context.get("task") or context.get("future")
        coro = getattr(task, "get_coro", lambda: None)()
        name = getattr(coro, "__qualname__", "")
        if any(name.endswith(t) for t in _LIBRARY_TASKS):
            log.debug("qemu.qmp: %s (%s)", context.get("message"), context.get("exception"))
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
