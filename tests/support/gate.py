"""A TCP gate between a client and a real broker: open it, shut it, like an outage.

Shutting the gate stops listening and cuts every connection, so the client sees the
broker vanish while the test's own subscriber, connected to the broker directly,
keeps recording.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from qmpdirty.demo.lab.qemu import free_port


class Gate:
    """``127.0.0.1:port`` forwarding to ``127.0.0.1:target`` while open."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def shut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w.close()
            return
        self._writers |= {w, uw}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(r, uw), copy(ur, w))


async def until(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll ``check`` until it is truthy (a sink's real state: no event signals it)."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polls the sink's real state; no event exists
            await asyncio.sleep(0.02)
