"""A scripted QMP server for adapter tests: real sockets, QEMU's wire format.

It greets like QEMU 10.0 (``{"QMP": {"version": ..., "capabilities": []}}``),
accepts ``qmp_capabilities``, records every command it receives, and answers each
from a table of handlers (a reply value, a QMP error, silence, or a hang-up).
Reply shapes are QEMU's own (qapi/*.json); recorded replies live in tests/data/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.jsonstream import json_objects

GREETING = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10},
                                "package": "Debian 1:10.0.2"}, "capabilities": ["oob"]}}


class Silence:
    """Handler result: never answer (a frozen QEMU)."""


class HangUp:
    """Handler result: close the connection instead of answering."""


@dataclass
class Raw:
    """Handler result: send these bytes as they are (malformed JSON, huge messages)."""

    data: bytes


@dataclass
class QmpError:
    cls: str
    desc: str


Handler = Callable[[dict[str, Any]], object]


@dataclass
class ScriptedQmp:
    """``await start()`` then point a client at ``path``; ``commands`` logs what came in."""

    path: Path
    replies: dict[str, Handler] = field(default_factory=dict)
    greeting: object = field(default_factory=lambda: GREETING)
    commands: list[dict[str, Any]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> ScriptedQmp:
        self._server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                       limit=64 * 1024 * 1024)
        return self

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def emit(self, event: str, data: dict[str, Any] | None = None) -> None:
        """Send an event to every connected client."""
        msg = {"event": event, "data": data or {},
               "timestamp": {"seconds": 1795000000, "microseconds": 1}}
        for w in self.writers:
            w.write(json.dumps(msg).encode() + b"\n")
            await w.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            writer.close()  # the client hung up on us (as it may, on a hostile reply)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> None:
        self.writers.append(writer)
        writer.write(json.dumps(self.greeting).encode() + b"\n")
        await writer.drain()
        async for msg in json_objects(reader):
            self.commands.append(msg)
            name = msg.get("execute")
            if name == "qmp_capabilities":
                result: object = {}
            elif name in self.replies:
                result = self.replies[name](msg.get("arguments", {}))
            else:
                result = QmpError("CommandNotFound", f"The command {name} has not been found")
            if isinstance(result, Silence):
                continue
            if isinstance(result, HangUp):
                writer.close()
                return
            if isinstance(result, Raw):
                writer.write(result.data)
                await writer.drain()
                continue
            reply: dict[str, Any] = (
                {"error": {"class": result.cls, "desc": result.desc}}
                if isinstance(result, QmpError) else {"return": result}
            )
            if "id" in msg:
                reply["id"] = msg["id"]
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()

