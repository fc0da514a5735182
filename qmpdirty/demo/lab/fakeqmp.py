"""The one fake QEMU monitor: the QMP server core every fake QEMU in the project is built on.

A ``QmpServer`` is one fake VM's QMP. It listens on one or more UNIX sockets (the VM's
monitors), greets each client, negotiates capabilities, frames the client's JSON
stream, hands each command to its ``Responder`` and writes the answer back with the
command's ``id``; ``emit`` sends an event to every negotiated monitor, as QEMU's
``monitor_qapi_event_emit`` does. Every byte on the wire is shaped by ``qmpwire``,
which is faithful to QEMU's (checked against recorded QEMU 10.0.2 replies by
``tests/adapters/test_fake_qmp.py``). What a VM *says* is its responder's:

* ``tests/adapters/scripted_qmp.py`` (``ScriptedQmp``): a table of handlers, for tests;
* ``qmpdirty/demo/lab/vfio_standin.py``: a real QEMU's replies with VFIO devices added,
  each fabrication checked against that QEMU's ``query-qmp-schema``;
* ``qmpdirty/demo/lab/recorded.py`` (``RecordedVm``): QEMU 10.0.2's recorded replies,
  the benchmarks' 1,000-VM fleet (``bench/fleet.py``);
* ``tests/support/recording_proxy.py`` is no responder: it relays bytes to a real
  QEMU, listening through ``listen``.

A responder's answer is a JSON value (the ``return``), an ``ErrorReply`` (returned or
raised), ``Encoded`` (a pre-encoded ``"return": ...`` member), ``Silence`` (no answer
to this command), ``HangUp`` (close instead), ``Raw`` (bytes as they are: malformed or
huge replies), or an awaitable of one of these (the stand-in asks a real QEMU).

Connections are ``asyncio.Protocol`` callbacks, no task per connection (the fleet has
2,000). Like QEMU's monitor without OOB, a connection answers in order: while an
awaited answer is pending, later commands wait. A responder that raises anything
but ``ErrorReply`` has failed to play QEMU: the failure goes to ``failures`` and the
log, and the client is hung up on, so that a test asserting ``failures == []`` fails.
Must not: know any command beyond ``qmp_capabilities`` (that is the responders').
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from qmpdirty.demo.lab import qmpwire
from qmpdirty.demo.lab.qmpwire import ErrorReply

log = logging.getLogger(__name__)


class Silence:
    """Answer: none to this command (a hung command; later ones are still answered)."""


class HangUp:
    """Answer: close the connection instead of answering."""


@dataclass(frozen=True, slots=True)
class Raw:
    """Answer: send these bytes as they are (malformed JSON, huge messages)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Encoded:
    """Answer: a pre-encoded ``"return": ...`` or ``"error": ...`` member."""

    member: str


@dataclass(frozen=True, slots=True)
class Command:
    """One command as received: its name, arguments and whole message (with ``id``)."""

    name: str
    arguments: dict[str, Any]
    message: dict[str, Any]


class Responder(Protocol):
    """What one fake VM says: its greeting and its answer to each command."""

    def greeting(self) -> object: ...

    def answer(self, command: Command) -> object: ...


class QmpServer:
    """One fake VM's QMP monitors: ``await listen(path)`` for each, ``close()`` at the end."""

    def __init__(self, responder: Responder, *, name: str = "fake QEMU",
                 on_message: Callable[[object], None] | None = None,
                 failures: list[str] | None = None) -> None:
        self.responder = responder
        self.name = name
        self.on_message = on_message  # sees every message received, before it is answered
        self.failures: list[str] = [] if failures is None else failures
        self.connections: set[Monitor] = set()
        self.paths: list[Path] = []
        self._servers: list[asyncio.AbstractServer] = []  # uvloop closes a collected server

    async def listen(self, path: Path, backlog: int = 100) -> QmpServer:
        """Accept QMP clients on the UNIX socket ``path`` (one more monitor)."""
        loop = asyncio.get_running_loop()
        self._servers.append(await loop.create_unix_server(
            lambda: Monitor(self, path.name), str(path), backlog=backlog))
        self.paths.append(path)
        return self

    def emit(self, event: str, data: Mapping[str, Any] | None = None,
             at: float | None = None) -> float:
        """Send an event (stamped now, or ``at``) to every negotiated monitor; returns its
        QEMU timestamp as epoch seconds."""
        message = qmpwire.event(event, data, at)
        self.broadcast(message)
        return qmpwire.event_time(message)

    def broadcast(self, message: Mapping[str, Any]) -> None:
        """Send an event message as it is to every negotiated monitor."""
        self.broadcast_raw(qmpwire.encode(message))

    def broadcast_raw(self, wire: bytes) -> None:
        """Send bytes as they are to every negotiated monitor (what no QEMU would send:
        JSON Python cannot read, a reply to no command)."""
        for monitor in list(self.connections):
            if monitor.negotiated:
                monitor.write(wire)

    def fail(self, where: str, exc: Exception) -> HangUp:
        """Record that the responder could not play QEMU; the client is hung up on."""
        self.failures.append(f"{where}: {type(exc).__name__}: {exc}")
        log.error("%s %s: cannot answer as QEMU would: %s", self.name, where, exc)
        return HangUp()

    async def close(self) -> None:
        for monitor in list(self.connections):
            monitor.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


class Monitor(asyncio.Protocol):
    """One client's connection: greeting, negotiation, then commands answered in order."""

    def __init__(self, server: QmpServer, where: str) -> None:
        self.server = server
        self.where = where
        self.negotiated = False
        self.oob = False
        self._offered: frozenset[str] = frozenset()
        self._framer = qmpwire.Framer()
        self._waiting: deque[object] = deque()
        self._pending: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.server.connections.add(self)
        try:
            hello = self.server.responder.greeting()
            self.write(qmpwire.encode(hello))
        except Exception as exc:  # a greeting QEMU would not send
            self.server.fail(self.where, exc)
            self.close()
            return
        self._offered = _offered(hello)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._transport = None
        if self._pending is not None:
            self._pending.cancel()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def data_received(self, data: bytes) -> None:
        if not self.is_open:
            return
        self._waiting.extend(self._framer.feed(data))
        if self._pending is None:
            self._answer_waiting()

    def write(self, data: bytes) -> None:
        if self._transport is not None and self.is_open:
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _answer_waiting(self) -> None:
        while self._waiting and self.is_open:
            message = self._waiting.popleft()
            answer = self._answer(message)
            if inspect.isawaitable(answer):
                self._pending = asyncio.get_running_loop().create_task(
                    self._finish(message, answer), name=f"qmp-answer {self.where}")
                return
            self._deliver(message, answer)

    async def _finish(self, message: object, pending: Awaitable[object]) -> None:
        try:
            answer = await pending
        except ErrorReply as exc:
            answer = exc
        except Exception as exc:
            answer = self.server.fail(self.where, exc)
        self._pending = None
        self._deliver(message, answer)
        self._answer_waiting()

    def _answer(self, message: object) -> object:
        if self.server.on_message is not None:
            self.server.on_message(message)
        try:
            name, arguments = qmpwire.command_of(message, self.oob)
            if name == qmpwire.NEGOTIATE:
                return self._negotiate(arguments)
            if not self.negotiated:
                raise qmpwire.expecting_negotiation()
            return self.server.responder.answer(Command(name, arguments, cast(Any, message)))
        except ErrorReply as exc:
            return exc
        except Exception as exc:
            return self.server.fail(self.where, exc)

    def _negotiate(self, arguments: dict[str, Any]) -> object:
        """``qmp_capabilities`` (monitor/qmp-cmds-control.c ``qmp_caps_accept``)."""
        if self.negotiated:
            raise qmpwire.already_negotiated()
        enable = [str(c) for c in arguments.get("enable") or []]
        unavailable = [c for c in enable if c not in self._offered]
        if unavailable:
            raise ErrorReply("GenericError",
                             f"Capability {', '.join(unavailable)} not available")
        self.negotiated, self.oob = True, "oob" in enable
        return {}

    def _deliver(self, message: object, answer: object) -> None:
        if isinstance(answer, Silence):
            return
        if isinstance(answer, HangUp):
            self.close()
            return
        if isinstance(answer, Raw):
            self.write(answer.data)
            return
        if isinstance(answer, ErrorReply):
            member = answer.member()
        elif isinstance(answer, Encoded):
            member = answer.member
        else:
            try:
                member = qmpwire.return_member(answer)
            except (TypeError, ValueError) as exc:  # not JSON: no QEMU would send it
                self.close()
                self.server.fail(self.where, exc)
                return
        self.write(qmpwire.reply(member, message if isinstance(message, dict) else {}))


def _offered(hello: object) -> frozenset[str]:
    """The capabilities a greeting offers (none when it is no QMP greeting)."""
    try:
        return frozenset(str(c) for c in cast(Any, hello)["QMP"]["capabilities"])
    except (KeyError, TypeError):
        return frozenset()
