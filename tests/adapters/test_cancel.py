"""A cancellation always wins over errors a TaskGroup's children raise meanwhile, and
over an event set in the same turn of the loop.

Python 3.11's TaskGroup, cancelled from outside while a child fails, raises the
child's error and spends the cancel request. Seen in CI: the MQTT sink's connect
attempt failed its TLS handshake just as the daemon stopped, the sink took the error
for a failed connection, and reconnected until SIGKILL.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiomqtt
import pytest

from qmpdirty.cancel import first_error, wait_set
from qmpdirty.sinks.client import connect


async def _fails_when_cancelled() -> None:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        raise aiomqtt.MqttError("certificate verify failed") from None


async def _unwrap() -> None:
    try:
        async with asyncio.TaskGroup() as tg:
            await asyncio.wait({tg.create_task(_fails_when_cancelled())})
    except BaseExceptionGroup as group:
        raise first_error(group) from None


async def test_a_cancelled_task_gets_the_cancellation_not_the_childs_error() -> None:
    task = asyncio.create_task(_unwrap())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_without_a_cancellation_the_first_error_is_raised() -> None:
    async def fails() -> None:
        raise aiomqtt.MqttError("not authorized")

    with pytest.raises(aiomqtt.MqttError, match="not authorized"):
        try:
            async with asyncio.TaskGroup() as tg:
                await asyncio.wait({tg.create_task(fails())})  # the body waits
        except BaseExceptionGroup as group:
            raise first_error(group) from None
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


class _Handshake:
    """An aiomqtt client whose CONNECT fails: at once, or as it is cancelled (a stand-in
    for a TLS handshake that fails; ``test_transport_security`` has the real one)."""

    def __init__(self, *, at_once: bool = False) -> None:
        self._client = SimpleNamespace(on_socket_close=None, socket=lambda: None,
                                       _sock_close=lambda: None)  # what abort() uses
        self.at_once = at_once

    async def __aenter__(self) -> Any:
        if self.at_once:
            raise aiomqtt.MqttError("certificate verify failed")
        await _fails_when_cancelled()


async def test_a_stop_during_a_failing_connect_ends_the_connect() -> None:
    client: Any = _Handshake()
    task = asyncio.create_task(connect(client))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failed_connect_is_the_failure_and_leaves_no_cancel_behind() -> None:
    """The reconnect loop goes on after it, and later cancels still mean a stop."""
    client: Any = _Handshake(at_once=True)

    async def attempt() -> int:
        with pytest.raises(aiomqtt.MqttError, match="certificate verify failed"):
            await connect(client)
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()

    assert await asyncio.create_task(attempt()) == 0


async def _loop_on(event: asyncio.Event) -> int:
    """A task's loop over ``wait_set``, as the VM's forecast, liveness and VFIO tasks
    run theirs."""
    turns = 0
    while turns < 100:
        await wait_set(event, 10.0)
        event.clear()
        turns += 1
    return turns


async def test_a_cancel_in_the_same_turn_as_the_event_ends_the_waiting_loop() -> None:
    """With ``asyncio.wait_for`` in place of ``wait_set``, Python 3.11 loses this
    cancellation: the loop runs on and its TaskGroup never ends (a killed QEMU's VM
    stayed online and the daemon's stop hung, in CI)."""
    event = asyncio.Event()
    task = asyncio.create_task(_loop_on(event))
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    for _ in range(5):  # keep the event coming, as other tasks would
        await asyncio.sleep(0.01)
        event.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    assert task.cancelled()


async def test_wait_set_says_whether_the_event_came_in_time() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5.0) is True
