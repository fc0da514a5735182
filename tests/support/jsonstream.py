"""JSON objects from a byte stream with no separators between them.

QMP is a stream of JSON objects; qemu.qmp sends commands without a trailing
newline, so test servers and proxies cannot read lines: they feed bytes here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class JsonStream:
    """Feed bytes, get back every complete JSON value so far."""

    def __init__(self) -> None:
        self._decoder = json.JSONDecoder()
        self._buf = ""

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data.decode(errors="replace")
        out = []
        while self._buf.strip():
            try:
                value, end = self._decoder.raw_decode(self._buf.lstrip())
            except json.JSONDecodeError:
                break  # incomplete: wait for more bytes
            self._buf = self._buf.lstrip()[end:]
            out.append(value)
        return out


async def json_objects(reader: asyncio.StreamReader) -> AsyncIterator[Any]:
    """Every JSON value the reader delivers, as it arrives."""
    stream = JsonStream()
    while chunk := await reader.read(65536):
        for value in stream.feed(chunk):
            yield value
