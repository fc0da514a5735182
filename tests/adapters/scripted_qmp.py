"""A scripted QMP server for adapter and pipeline tests: real sockets, QEMU's wire format.

``ScriptedQmp`` is the lab's one fake QMP server (``qmpdirty.demo.lab.fakeqmp``)
answering from a table of handlers, one per command name: a handler gets the
command's arguments and returns the reply value, a ``QmpError``, ``Silence``,
``HangUp`` or ``Raw`` (bytes sent as they are). A command without a handler gets
QEMU's ``CommandNotFound``. Everything else is QEMU's, from ``qmpwire``: it greets like
QEMU 10.0.2 (``GREETING``, or ``greeting``: anything, to test a bad one), requires
``qmp_capabilities`` first, echoes ``id``, ends every message with CRLF, and ``emit``
sends an event in QEMU's shape (no ``data`` member when ``data`` is None) stamped
with ``clock()``: a fixed time by default, so that tests are deterministic
(``emit_raw``: bytes as they are).
``commands`` records every message received, ``qmp_capabilities`` included; a
handler that raises anything but ``QmpError`` is recorded in ``failures`` and the
client is hung up on. Tests that need more than a table (per-connection state,
awaited answers) write a ``fakeqmp.Responder`` and serve it with ``QmpServer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from qmpdirty.demo.lab import qmpwire
from qmpdirty.demo.lab.fakeqmp import Command, HangUp, QmpServer, Raw, Silence
from qmpdirty.demo.lab.qmpwire import ErrorReply as QmpError

__all__ = ["GREETING", "HangUp", "QmpError", "Raw", "ScriptedQmp", "Silence"]

GREETING = qmpwire.greeting({"qemu": {"micro": 2, "minor": 0, "major": 10},
                             "package": "Debian 1:10.0.2"})
#: The timestamp ``emit`` gives events unless told otherwise (2026-11-18).
FIXED_TIME = 1795000000.000001

Handler = Callable[[dict[str, Any]], object]


@dataclass
class ScriptedQmp:
    """``await start()`` then point a client at ``path``; ``commands`` logs what came in."""

    path: Path
    replies: dict[str, Handler] = field(default_factory=dict)
    greeting: object = field(default_factory=lambda: GREETING)
    commands: list[dict[str, Any]] = field(default_factory=list)
    clock: Callable[[], float] = lambda: FIXED_TIME
    _qmp: QmpServer | None = None

    async def start(self) -> ScriptedQmp:
        self._qmp = QmpServer(_Script(self), name="scripted QMP", on_message=self._record)
        await self._qmp.listen(self.path)
        return self

    @property
    def failures(self) -> list[str]:
        """Handlers that raised instead of answering as QEMU would."""
        return [] if self._qmp is None else self._qmp.failures

    async def close(self) -> None:
        if self._qmp is not None:
            await self._qmp.close()

    def _record(self, message: object) -> None:
        self.commands.append(cast(dict[str, Any], message))

    async def emit(self, event: str, data: dict[str, Any] | None = None) -> None:
        """Send an event to every connected (negotiated) client."""
        assert self._qmp is not None, "start() first"
        self._qmp.emit(event, data, self.clock())

    async def emit_raw(self, wire: bytes) -> None:
        """Send bytes as they are to every connected (negotiated) client."""
        assert self._qmp is not None, "start() first"
        self._qmp.broadcast_raw(wire)


class _Script:
    """The responder: greeting and handlers from the ``ScriptedQmp``."""

    def __init__(self, script: ScriptedQmp) -> None:
        self.script = script

    def greeting(self) -> object:
        return self.script.greeting

    def answer(self, command: Command) -> object:
        handler = self.script.replies.get(command.name)
        if handler is None:
            raise qmpwire.not_found(command.name)
        return handler(command.arguments)
