"""A QMP proxy that records every command a client sends to a real QEMU (tests).

Sits on a UNIX socket between the daemon and QEMU's QMP socket and relays bytes both
ways untouched: the client talks to QEMU itself, greeting, negotiation and all. It
is a wire tap, not a fake QEMU, so it is no ``fakeqmp`` responder; it reads the
client's stream with the lab's QMP framer (``qmpwire.Framer``: JSON values, no
newline needed) to record each ``execute`` with its arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.qmpwire import Framer


class RecordingProxy:
    def __init__(self, listen: Path, upstream: Path) -> None:
        self.listen = listen
        self.upstream = upstream
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> RecordingProxy:
        self._server = await asyncio.start_unix_server(self._relay, str(self.listen))
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _relay(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_unix_connection(str(self.upstream))

        async def to_qemu() -> None:
            framer = Framer()
            while data := await r.read(65536):
                uw.write(data)
                await uw.drain()
                for obj in framer.feed(data):
                    if isinstance(obj, dict) and "execute" in obj:
                        self.commands.append((obj["execute"], obj.get("arguments") or {}))
            uw.close()

        async def to_client() -> None:
            while data := await ur.read(65536):
                w.write(data)
                await w.drain()
            w.close()

        with contextlib.suppress(ConnectionError):
            await asyncio.gather(to_qemu(), to_client())
