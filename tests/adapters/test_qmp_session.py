"""QmpSession against a scripted QMP server over a real UNIX socket."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qmpdirty.config.address import QmpAddress
from qmpdirty.demo.lab.fakeqmp import Encoded
from qmpdirty.errors import (
    CommandNotAllowed,
    QmpClosedError,
    QmpCommandError,
    QmpConnectError,
    QmpReplyError,
    QmpTimeoutError,
)
from qmpdirty.qmp import translate
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.session import QmpSession
from tests.adapters.scripted_qmp import HangUp, QmpError, ScriptedQmp, Silence

#: Valid JSON that Python's json refuses: 5,000 digits (it reads 4,300), 5,000 levels.
HUGE_INT = "9" * 5000
TOO_DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
async def server() -> AsyncIterator[ScriptedQmp]:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "qmp.sock"
    srv = await ScriptedQmp(path, replies={
        "query-name": lambda _a: {"name": "vm1"},
        "query-status": lambda _a: {"status": "running", "running": True},
        "query-kvm": lambda _a: QmpError("GenericError", "nope"),
        "query-uuid": lambda _a: Silence(),
        "query-cpus-fast": lambda _a: HangUp(),
    }).start()
    yield srv
    await srv.close()


async def _open(srv: ScriptedQmp, policy: CommandPolicy | None = None,
                queue: int = 100, timeout_s: float = 0.5) -> QmpSession:
    return await QmpSession.open(
        QmpAddress("unix", srv.path), policy=policy or CommandPolicy(),
        command_timeout_s=timeout_s, connect_timeout_s=2.0, event_queue_size=queue, label="t",
    )


async def test_replies_errors_and_timeouts(server: ScriptedQmp) -> None:
    session = await _open(server)
    try:
        assert await session.execute("query-name") == {"name": "vm1"}
        with pytest.raises(QmpCommandError) as err:
            await session.execute("query-kvm")
        assert (err.value.error_class, err.value.desc) == ("GenericError", "nope")
        with pytest.raises(QmpTimeoutError, match=r"query-uuid: no reply within 0\.5s"):
            await session.execute("query-uuid")
        # the session survives a timeout: later commands still work
        assert await session.execute("query-status") == {"status": "running", "running": True}
    finally:
        await session.close()


async def test_hangup_is_noticed_and_later_commands_raise_closed(server: ScriptedQmp) -> None:
    session = await _open(server)
    with pytest.raises(QmpClosedError):
        await session.execute("query-cpus-fast")  # the server hangs up instead of answering
    await asyncio.wait_for(session.wait_closed(), 2)
    assert not session.is_open
    with pytest.raises(QmpClosedError):
        await session.execute("query-name")
    await session.close()


async def test_allow_list_keeps_commands_off_the_wire(server: ScriptedQmp) -> None:
    session = await _open(server, CommandPolicy(enable_migration_events=False,
                                                measure_dirty_rate=False))
    try:
        for command, args in [("migrate", {"uri": "exec:cat"}), ("stop", None), ("quit", None),
                              ("calc-dirty-rate", {"calc-time": 1}),
                              ("migrate-set-capabilities",
                               {"capabilities": [{"capability": "events", "state": True}]})]:
            with pytest.raises(CommandNotAllowed):
                await session.execute(command, args)
        await session.execute("query-name")
    finally:
        await session.close()
    sent = [c["execute"] for c in server.commands]
    assert sent == ["qmp_capabilities", "query-name"]


async def test_event_queue_is_bounded_and_counts_drops(server: ScriptedQmp) -> None:
    session = await _open(server, queue=100)
    try:
        for n in range(1000):
            await server.emit("MIGRATION_PASS", {"pass": n})
        await session.execute("query-name")  # replies arrive after the events: all read
        assert session.dropped_events == 900
        first = await session.next_event()
        assert first["data"] == {"pass": 900}  # the oldest were dropped
        # what the session hands on passes the strict wire models (a plain dict)
        assert translate.event_from(first).data == {"pass": 900}
    finally:
        await session.close()


def _raw_event(name: str, value: str) -> bytes:
    return (f'{{"timestamp": {{"seconds": 1795000000, "microseconds": 1}}, "event": "{name}", '
            f'"data": {{"v": {value}}}}}\r\n').encode()


async def test_unreadable_events_are_replaced_in_order_and_the_session_stays(
        server: ScriptedQmp) -> None:
    session = await _open(server)
    try:
        await server.emit("RESUME")
        await server.emit_raw(_raw_event("HUGE", HUGE_INT))
        await server.emit("STOP")
        await server.emit_raw(_raw_event("DEEP", TOO_DEEP))
        await server.emit("RESUME")
        got: list[str] = []
        for _ in range(5):
            try:
                got.append(str((await session.next_event())["event"]))
            except QmpReplyError as exc:
                got.append(str(exc))
        assert got[0::2] == ["RESUME", "STOP", "RESUME"]
        assert got[1].startswith("event HUGE: unreadable: Exceeds the limit (4300 digits)")
        assert got[3] == "event DEEP: nested deeper than Python's JSON reader allows"
        assert session.is_open and session.dropped_events == 0
        assert await session.execute("query-name") == {"name": "vm1"}
    finally:
        await session.close()


async def test_an_unreadable_reply_fails_its_command_and_the_session_stays(
        server: ScriptedQmp) -> None:
    session = await _open(server)
    try:
        for value in (HUGE_INT, TOO_DEEP):
            server.replies["query-status"] = \
                lambda _a, v=value: Encoded(f'"return": {{"status": {v}}}')  # type: ignore[misc]
            with pytest.raises(QmpReplyError, match="query-status: unreadable reply"):
                await session.execute("query-status")
            assert await session.execute("query-name") == {"name": "vm1"}
        assert session.is_open
        # a reply to no command in flight is dropped (QMP spec), not taken for an event
        await server.emit_raw(f'{{"return": {HUGE_INT}, "id": "nobody"}}\r\n'.encode())
        await server.emit("STOP")
        assert (await session.next_event())["event"] == "STOP"
    finally:
        await session.close()


async def test_an_unreadable_greeting_is_a_protocol_error(tmp_path: Path) -> None:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "huge.sock"

    async def greet(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(f'{{"QMP": {{"version": {HUGE_INT}, "capabilities": []}}}}\r\n'.encode())
        await asyncio.sleep(5)
        w.close()

    server = await asyncio.start_unix_server(greet, str(path))
    try:
        with pytest.raises(QmpConnectError, match="4300 digits") as err:
            await QmpSession.open(QmpAddress("unix", path), policy=CommandPolicy(),
                                  command_timeout_s=1, connect_timeout_s=2,
                                  event_queue_size=10, label="huge")
        assert err.value.protocol
    finally:
        server.close()


async def test_no_greeting_is_a_connect_timeout(tmp_path: Path) -> None:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "mute.sock"

    async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        w.close()

    server = await asyncio.start_unix_server(mute, str(path))
    try:
        with pytest.raises(QmpConnectError, match=r"no QMP greeting within 0\.3s"):
            await QmpSession.open(QmpAddress("unix", path), policy=CommandPolicy(),
                                  command_timeout_s=1, connect_timeout_s=0.3,
                                  event_queue_size=10, label="mute")
    finally:
        server.close()


async def test_bad_greeting_is_a_connect_error(tmp_path: Path) -> None:
    path = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp")) / "bad.sock"
    srv = await ScriptedQmp(path, greeting={"hello": "not qmp"}).start()
    try:
        with pytest.raises(QmpConnectError):
            await _open(srv)
    finally:
        await srv.close()


async def test_nothing_listening_is_a_connect_error(tmp_path: Path) -> None:
    with pytest.raises(QmpConnectError, match=r"No such file|not found|Connection refused"):
        await QmpSession.open(QmpAddress("unix", tmp_path / "none.sock"), policy=CommandPolicy(),
                              command_timeout_s=1, connect_timeout_s=1, event_queue_size=10,
                              label="none")
