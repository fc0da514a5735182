"""The lab's one fake QMP server core, wire module and client, held against QEMU 10.0.2.

Shapes come from the replies and events recorded from a real QEMU in
``tests/data/qemu-10.0.2/``; behaviour on the socket (negotiation, ``id``, errors for
bad input, CRLF, events only after negotiation, answers in order) from QEMU's
monitor/qmp.c and qapi/qmp-dispatch.c as cited in ``qmpwire``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.demo.lab import DemoError, qmpwire
from qmpdirty.demo.lab.control import LabCommandError, QmpControl
from qmpdirty.demo.lab.fakeqmp import Command, QmpServer, Silence
from qmpdirty.demo.lab.qmpwire import ErrorReply

RECORDED = Path(__file__).resolve().parent.parent / "data" / "qemu-10.0.2"


def load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def test_greeting_event_and_error_shapes_are_qemu_s() -> None:
    assert qmpwire.greeting(load("query-version.tcg.json")) == load("greeting.json")
    events = sorted(RECORDED.glob("event.*.json"))
    assert len(events) >= 10
    for path in events:
        real = json.loads(path.read_text())
        made = qmpwire.event(real["event"], real.get("data"), qmpwire.event_time(real))
        assert made == real, path.name  # no "data" for RESUME/STOP, as QEMU
    error = load("error.calc-dirty-rate.already-measuring.json")
    reply = qmpwire.reply(ErrorReply(**{"cls": error["error"]["class"],
                                        "desc": error["error"]["desc"]}).member(), {})
    assert json.loads(reply) == error and reply.endswith(b"}\r\n")


def test_framer_takes_any_chunking() -> None:
    framer = qmpwire.Framer()
    data = '{"execute": "a", "id": "é"}{"execute":"b"} \r\n{"execute": "c"}'.encode()
    got = [value for i in range(len(data)) for value in framer.feed(data[i:i + 1])]
    assert got == [{"execute": "a", "id": "é"}, {"execute": "b"}, {"execute": "c"}]


class Slow:
    """A responder whose first answer takes a while: later ones must wait their turn."""

    def greeting(self) -> object:
        return qmpwire.greeting(load("query-version.tcg.json"))

    def answer(self, command: Command) -> object:
        if command.name == "slow":
            return self._later(command.arguments)
        if command.name == "broken":
            raise RuntimeError("no QEMU says this")
        if command.name == "echo":
            return command.arguments
        if command.name == "hang":
            return Silence()
        raise qmpwire.not_found(command.name)

    async def _later(self, arguments: dict[str, Any]) -> object:
        await asyncio.sleep(0.2)
        return arguments


@pytest.fixture
async def server() -> AsyncIterator[QmpServer]:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "fake.sock"
    srv = await QmpServer(Slow()).listen(path)
    yield srv
    await srv.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def line(self) -> Any:
        raw = await asyncio.wait_for(self.reader.readline(), 5)
        assert raw.endswith(b"\r\n"), raw
        return json.loads(raw)

    async def ask(self, data: bytes) -> Any:
        self.writer.write(data)
        return await self.line()


async def connect(server: QmpServer) -> Client:
    client = Client(*await asyncio.open_unix_connection(str(server.paths[0])))
    assert await client.line() == load("greeting.json")
    return client


async def test_negotiation_ids_and_errors_as_qemu(server: QmpServer) -> None:
    c = await connect(server)
    assert await c.ask(qmpwire.execute("echo", {"x": 1}, 1)) == {"error": {
        "class": "CommandNotFound",
        "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1}
    server.emit("RESUME")  # not negotiated yet: QEMU sends it no events
    assert await c.ask(qmpwire.execute("qmp_capabilities", {"enable": ["oob"]}, "n")) == {
        "return": {}, "id": "n"}
    assert await c.ask(qmpwire.execute("qmp_capabilities", None, [2])) == {"error": {
        "class": "CommandNotFound",
        "desc": "Capabilities negotiation is already complete, command ignored"}, "id": [2]}
    assert await c.ask(qmpwire.execute("echo", {"x": 1}, {"k": 3})) == {
        "return": {"x": 1}, "id": {"k": 3}}
    assert await c.ask(qmpwire.execute("nope")) == {"error": {
        "class": "CommandNotFound", "desc": "The command nope has not been found"}}
    for bad, desc in [(b"[1]", "QMP input must be a JSON object"),
                      (b'{"id": 7}', "QMP input lacks member 'execute'"),
                      (b'{"execute": 1}', "QMP input member 'execute' must be a string"),
                      (b'{"execute": "echo", "arguments": []}',
                       "QMP input member 'arguments' must be an object"),
                      (b'{"execute": "echo", "x": 1}', "QMP input member 'x' is unexpected")]:
        reply = await c.ask(bad)
        assert reply["error"] == {"class": "GenericError", "desc": desc}, bad
    assert reply.get("id") is None
    at = server.emit("MIGRATION", {"status": "setup"})
    event = await c.line()
    assert event["data"] == {"status": "setup"} and qmpwire.event_time(event) == \
        pytest.approx(at, abs=1e-6)
    c.writer.close()


async def test_capabilities_not_offered_are_refused(tmp_path: Path) -> None:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "nooob.sock"
    responder = Slow()
    responder.greeting = lambda: qmpwire.greeting(  # type: ignore[method-assign]
        load("query-version.tcg.json"), ())
    server = await QmpServer(responder).listen(path)
    try:
        c = Client(*await asyncio.open_unix_connection(str(path)))
        assert (await c.line())["QMP"]["capabilities"] == []
        assert await c.ask(qmpwire.execute("qmp_capabilities", {"enable": ["oob"]})) == {
            "error": {"class": "GenericError", "desc": "Capability oob not available"}}
        c.writer.close()
    finally:
        await server.close()


async def test_answers_in_order_and_a_broken_responder_fails_loudly(
        server: QmpServer) -> None:
    c = await connect(server)
    await c.ask(qmpwire.execute("qmp_capabilities"))
    c.writer.write(qmpwire.execute("slow", {"n": 1}, 1) + qmpwire.execute("echo", {"n": 2}, 2))
    assert [await c.line(), await c.line()] == [{"return": {"n": 1}, "id": 1},
                                                {"return": {"n": 2}, "id": 2}]
    assert server.failures == []
    c.writer.write(qmpwire.execute("broken"))
    assert await asyncio.wait_for(c.reader.read(), 5) == b""  # hung up on
    assert len(server.failures) == 1 and "no QEMU says this" in server.failures[0]


async def test_the_lab_client_speaks_the_same_wire(server: QmpServer) -> None:
    """``QmpControl`` (synchronous, so on a thread): replies, errors, timeouts, events."""
    control = await asyncio.to_thread(QmpControl, server.paths[0], 0.5)
    try:
        assert await asyncio.to_thread(control.cmd, "echo", x=[1, "é"]) == {"x": [1, "é"]}
        with pytest.raises(LabCommandError, match="CommandNotFound: The command nope"):
            await asyncio.to_thread(control.cmd, "nope")
        with pytest.raises(DemoError, match=r"hang at .*: no reply within 0\.5 s"):
            await asyncio.to_thread(control.cmd, "hang")
        assert await asyncio.to_thread(control.events) == []
        server.emit("STOP")
        server.emit("RESUME")
        seen: list[str] = []
        for _ in range(3):
            seen += [e["event"] for e in await asyncio.to_thread(control.events, 2.0)]
            if len(seen) >= 2:
                break
        assert seen == ["STOP", "RESUME"]
        assert await asyncio.to_thread(control.cmd, "echo") == {}  # after a timeout, too
    finally:
        control.close()
    with pytest.raises(DemoError, match="closed"):
        control.cmd("echo")
