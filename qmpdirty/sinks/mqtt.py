"""The MQTT sink: one broker connection, reconnected forever, fed from the outbox (shell).

Stage: shell (a sink); with ``sinks.client`` (the client both sinks build) and
``sinks.retained`` (the reader of retained state), the only module that imports
``aiomqtt`` / ``paho``. It only publishes. Behaviour (Home Assistant's MQTT
conventions, design.md § MQTT contract):
* birth ``online`` / last will ``offline`` on ``<prefix>/<host>/status`` (retained);
* after every (re)connect all retained state is published again;
* while the broker is away messages wait in the bounded ``Outbox`` (a lane per VM,
  served round-robin, each in ``seq`` order);
* up to ``WINDOW`` QoS 1 publishes await their PUBACK at once, sent in outbox order
  (MQTT keeps one connection's order); waiting for each PUBACK in turn capped a busy
  host at one message per round trip (bench_scale: 80 msg/s, seconds of lag);
* a publish that fails or is cut off goes back to its place in the outbox with every
  later unacknowledged one (at-least-once; receivers de-duplicate by ``seq``);
* MQTT v5 (content type, message expiry) unless the broker only speaks 3.1.1.
How a connection ends (``sinks.client``): DISCONNECT when it failed while the daemon
goes on, or once the daemon's ``offline`` was delivered (a clean stop); in every other
case (a crash, a stop that could not deliver ``offline``) it is aborted without
DISCONNECT, so that the broker publishes the last will. Reconnects back off
exponentially, afresh after every connection that worked, and not while ``flush``
waits (a stop must not sleep through its deadline).
Producers call ``publish`` — synchronous, never blocks, never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from qmpdirty.config import MqttConfig
from qmpdirty.errors import SinkError
from qmpdirty.sinks.client import abort, connect, disconnect, mqtt_client
from qmpdirty.sinks.outbox import Outbox, Taken
from qmpdirty.telemetry import render
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.topics import Topics

log = logging.getLogger(__name__)

#: While the same failure repeats, remind at warning level this often.
REMIND_S = 300.0
#: CONNACK codes meaning "I do not speak MQTT v5" (3.1.1 rc 1, v5 reason 132).
_UNSUPPORTED_PROTOCOL = (1, 132)
#: QoS 1 publishes in flight at once (also paho's in-flight limit, default 20).
WINDOW = 64
#: Seconds a publish may wait for its PUBACK before the connection is given up.
PUBACK_TIMEOUT_S = 10.0
#: Seconds a connect attempt may wait for CONNACK before it is aborted.
CONNECT_TIMEOUT_S = 10.0
#: The first wait before reconnecting, and the longest while ``flush`` waits.
FIRST_RETRY_S = 0.2


class MqttSink:
    """Publishes ``Outgoing`` messages to one broker with birth, will and an outbox."""

    def __init__(self, cfg: MqttConfig, topics: Topics, client_id: str,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self._cfg = cfg
        self._connect_timeout_s = connect_timeout_s
        self._topics = topics
        self._client_id = client_id
        self.outbox = Outbox(cfg.outbox_size)
        self.connects = 0
        self.connected = False
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._v5 = cfg.protocol != "3.1.1"
        self._last_failure: str | None = None
        self._last_warned = 0.0
        self._on_drop: Callable[[int], None] | None = None
        self._unacked: dict[asyncio.Task[None], Taken] = {}  # in send order
        self._status_topic = render.host_status(topics, online=False).topic
        self._offline_delivered = False  # the daemon's ``offline`` has its PUBACK
        self._flushing = 0
        self._hurry = asyncio.Event()  # set while a flush waits: reconnect at once
        self._send_failure: BaseException | None = None
        self._props: dict[tuple[bool, int | None], Properties] = {}

    @property
    def in_flight(self) -> int:
        """Publishes sent and not yet acknowledged by the broker."""
        return len(self._unacked)

    def on_drop(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(n)`` when overflow drops ``n`` records (to publish the counter)."""
        self._on_drop = callback

    def publish(self, msg: Outgoing) -> None:
        """Queue one message for the broker; overflow is counted, never silent."""
        self._dropped(self.outbox.put(msg))
        self._drained.clear()
        self._wakeup.set()

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

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff and jitter, until cancelled."""
        delay = FIRST_RETRY_S
        while True:
            try:
                await self._session()
            except aiomqtt.MqttCodeError as exc:
                if self._v5 and self._cfg.protocol == "auto" and exc.rc in _UNSUPPORTED_PROTOCOL:
                    log.info("broker does not speak MQTT v5; using 3.1.1")
                    self._v5 = False
                    continue
                why = str(exc)
            except (aiomqtt.MqttError, OSError, SinkError) as exc:
                why = str(exc)
            finally:
                was_connected, self.connected = self.connected, False
            if was_connected:  # that connection worked: back off afresh
                delay = FIRST_RETRY_S
            self._failed(why, delay)
            await self._pause(delay)
            delay = min(delay * 2, self._cfg.reconnect_max_s)

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` (with jitter) before reconnecting; at most ``FIRST_RETRY_S``
        once a flush waits (the broker may be back, and a stop has a deadline)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay * random.uniform(0.8, 1.2)
        if not self._hurry.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(until):
                    await self._hurry.wait()
        await asyncio.sleep(max(0.0, min(until, loop.time() + FIRST_RETRY_S) - loop.time()))

    def _failed(self, why: str, delay: float) -> None:
        """Log a connection failure: a new reason at warning, the same again at debug,
        with a warning reminder every ``REMIND_S`` while it lasts."""
        now = time.monotonic()
        repeat = why == self._last_failure and now - self._last_warned < REMIND_S
        log.log(logging.DEBUG if repeat else logging.WARNING, "MQTT %s: %s; retrying in %.1fs",
                self._cfg.url, why, delay)
        if not repeat:
            self._last_failure, self._last_warned = why, now

    async def _session(self) -> None:
        """One broker connection: birth, every retained topic, then the outbox.

        Ends with DISCONNECT when the connection failed, or when the daemon's
        ``offline`` was delivered; otherwise (cancelled by a crash or by a stop that
        could not deliver ``offline``, or a bug here) aborted, so the will goes out."""
        client = self._client()
        await connect(client)
        clean = True
        try:
            self.connected = True
            self.connects += 1
            self._last_failure = None
            log.info("MQTT connected to %s (v%s)", self._cfg.url, "5" if self._v5 else "3.1.1")
            self.outbox.mark_all_retained()
            self._offline_delivered = False
            await self._send(client, render.host_status(self._topics, online=True))
            await self._serve(client)
        except (aiomqtt.MqttError, OSError):
            raise  # the connection failed; the daemon goes on and reconnects
        except BaseException:
            clean = self._offline_delivered
            raise
        finally:
            if clean:
                await disconnect(client)
            else:
                abort(client)

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(client), name="mqtt-watch")
                tg.create_task(self._drain(client), name="mqtt-drain")
        except ExceptionGroup as group:  # the connection's end, reported once
            raise group.exceptions[0] from None

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Raise MqttError as soon as the connection drops (iteration ends then)."""
        async for _ in client.messages:
            pass

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Send the outbox in order with up to ``WINDOW`` publishes unacknowledged."""
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
                task = asyncio.create_task(self._send(client, taken.msg), name="mqtt-publish")
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
                self._offline_delivered = msg.payload == b"offline"
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

    async def _send(self, client: aiomqtt.Client, msg: Outgoing) -> None:
        await client.publish(
            msg.topic, msg.payload, qos=msg.qos, retain=msg.retain,
            properties=self._properties(msg), timeout=PUBACK_TIMEOUT_S,
        )

    def _properties(self, msg: Outgoing) -> Properties | None:
        """v5 content type and expiry; one shared object per combination (paho only
        reads them, and building one per message cost more than the publish)."""
        if not self._v5:
            return None
        key = (msg.is_json, msg.expiry_s)
        props = self._props.get(key)
        if props is None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = "application/json" if msg.is_json else "text/plain"
            if msg.expiry_s:
                props.MessageExpiryInterval = msg.expiry_s
            self._props[key] = props
        return props

    def _client(self) -> aiomqtt.Client:
        """The publisher's client: its id, its last will and its in-flight window."""
        return mqtt_client(self._cfg, v5=self._v5, timeout_s=self._connect_timeout_s,
                           identifier=self._client_id,
                           will=render.host_status(self._topics, online=False), window=WINDOW)

    async def flush(self, deadline_s: float) -> bool:
        """Wait until the outbox is empty and connected, at most ``deadline_s``.
        Meanwhile a broker that is away is tried every ``FIRST_RETRY_S``."""
        self._flushing += 1
        self._hurry.set()
        try:
            async with asyncio.timeout(deadline_s):
                while len(self.outbox) or self._unacked or not self.connected:
                    self._drained.clear()
                    self._wakeup.set()
                    await self._drained.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._flushing -= 1
            if not self._flushing:
                self._hurry.clear()

