"""The MQTT sink's send window: the outbox and the publishes awaiting their PUBACK (shell).

Stage: sink (``sinks.mqtt`` owns one and hands it each connection's ``send``). It
keeps the bookkeeping between the producers and a connection, so that the connection
loop holds only connecting, reconnecting and the protocol:
* while the broker is away messages wait in the bounded ``Outbox`` (a lane per VM,
  served round-robin, each in ``seq`` order);
* up to ``WINDOW`` QoS 1 publishes await their PUBACK at once, sent in outbox order
  (MQTT keeps one connection's order); waiting for each PUBACK in turn capped a busy
  host at one message per round trip (bench_scale: 80 msg/s, seconds of lag);
* a publish that fails or is cut off goes back to its place in the outbox with every
  later unacknowledged one (at-least-once; receivers de-duplicate by ``seq``);
* it notes when the daemon's ``offline`` has its PUBACK (a stop may then DISCONNECT).
This module must not import the MQTT client (``send`` is given), block or raise in
``put``, or drop a record without counting and logging it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from qmpdirty.sinks.outbox import Outbox, Taken
from qmpdirty.telemetry.message import Outgoing

#: The MQTT sink's records keep the logger name they had before this module was split off.
log = logging.getLogger("qmpdirty.sinks.mqtt")

#: QoS 1 publishes in flight at once (also paho's in-flight limit, default 20).
WINDOW = 64

#: Publishes one message on the current connection; returns once it has its PUBACK.
Send = Callable[[Outgoing], Coroutine[Any, Any, None]]


class PublishWindow:
    """The outbox and up to ``WINDOW`` unacknowledged publishes, in send order."""

    def __init__(self, capacity: int, status_topic: str) -> None:
        self.outbox = Outbox(capacity)
        self.offline_delivered = False  # the daemon's ``offline`` has its PUBACK
        self._status_topic = status_topic
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._on_drop: Callable[[int], None] | None = None
        self._unacked: dict[asyncio.Task[None], Taken] = {}  # in send order
        self._send_failure: BaseException | None = None

    @property
    def in_flight(self) -> int:
        """Publishes sent and not yet acknowledged by the broker."""
        return len(self._unacked)

    @property
    def pending(self) -> bool:
        """Something waits in the outbox or for its PUBACK."""
        return bool(len(self.outbox) or self._unacked)

    def on_drop(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(n)`` when overflow drops ``n`` records (to publish the counter)."""
        self._on_drop = callback

    def put(self, msg: Outgoing) -> None:
        """Queue one message; overflow is counted, never silent."""
        self._dropped(self.outbox.put(msg))
        self._drained.clear()
        self._wakeup.set()

    def begin(self) -> None:
        """A connection is up: every retained topic goes out again on it."""
        self.outbox.mark_all_retained()
        self.offline_delivered = False

    async def wait_drained(self) -> None:
        """Wake the sender and wait until it finds nothing left to send or to await."""
        self._drained.clear()
        self._wakeup.set()
        await self._drained.wait()

    def _dropped(self, dropped: int) -> None:
        if dropped:
            total = self.outbox.dropped_total
            if total == dropped or total % 1000 < dropped:
                most = sorted(self.outbox.dropped_by_vm.items(), key=lambda kv: -kv[1])[:3]
                log.warning("MQTT outbox full (%d): dropped %d oldest records so far (most "
                            "from %s)", self.outbox.capacity, total,
                            ", ".join(f"{vm or 'the daemon'}: {n}" for vm, n in most))
            if self._on_drop is not None:
                self._on_drop(dropped)

    async def drain(self, send: Send) -> None:
        """Send the outbox in order with up to ``WINDOW`` publishes unacknowledged,
        until a publish fails (raised) or cancelled; then give the rest back."""
        room = asyncio.Semaphore(WINDOW)
        self._send_failure = None
        try:
            while True:
                await room.acquire()
                if self._send_failure is not None:
                    raise self._send_failure
                taken = self.outbox.take()
                if taken is None:
                    room.release()
                    self._check_drained()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                task = asyncio.create_task(send(taken.msg), name="mqtt-publish")
                self._unacked[task] = taken
                task.add_done_callback(functools.partial(self._acked, room))
        finally:
            self._give_back_unacked()

    def _acked(self, room: asyncio.Semaphore, task: asyncio.Task[None]) -> None:
        """A publish ended: forget it if the broker has it, else stop the connection."""
        room.release()
        if task.cancelled() or task not in self._unacked:  # given back already
            return
        failure = task.exception()
        if failure is None:
            msg = self._unacked.pop(task).msg
            if msg.topic == self._status_topic:
                self.offline_delivered = msg.payload == b"offline"
            self._check_drained()
        elif self._send_failure is None:
            self._send_failure = failure
            self._wakeup.set()

    def _give_back_unacked(self) -> None:
        """Every publish not acknowledged returns to the outbox's front, in send order."""
        pending, self._unacked = self._unacked, {}
        for task in pending:
            task.cancel()
        for taken in reversed(list(pending.values())):
            self._dropped(self.outbox.give_back(taken))

    def _check_drained(self) -> None:
        if not len(self.outbox) and not self._unacked:
            self._drained.set()
