"""The MQTT sink: one broker connection, reconnected forever, fed from the outbox (shell).

Stage: shell (a sink). With ``sinks.client`` (the client both sinks build),
``sinks.retained`` (the reader of retained state) and ``sinks.watch`` (the live
reader), the product's only importers of ``aiomqtt`` / ``paho`` (an import-linter
contract). It only publishes.
Behaviour (Home Assistant's MQTT conventions, design.md § MQTT contract):
* birth ``online`` / last will ``offline`` on ``<prefix>/<host>/status`` (retained);
* after every (re)connect all retained state is published again;
* what waits for the broker, and the QoS 1 publishes awaiting their PUBACK, are the
  ``PublishWindow``'s (``sinks.window``: the bounded outbox, ``WINDOW`` publishes in
  flight, at-least-once give-back); this module connects, and sends what it hands out;
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

from qmpdirty.cancel import first_error
from qmpdirty.config.sections import MqttConfig
from qmpdirty.errors import SinkError
from qmpdirty.sinks.client import abort, connect, disconnect, mqtt_client
from qmpdirty.sinks.window import WINDOW, PublishWindow
from qmpdirty.telemetry import render
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.topics import Topics

__all__ = [
    "CONNECT_TIMEOUT_S",
    "FIRST_RETRY_S",
    "PUBACK_TIMEOUT_S",
    "REMIND_S",
    "WINDOW",
    "MqttSink",
]

log = logging.getLogger(__name__)

#: While the same failure repeats, remind at warning level this often.
REMIND_S = 300.0
#: CONNACK codes meaning "I do not speak MQTT v5" (3.1.1 rc 1, v5 reason 132).
_UNSUPPORTED_PROTOCOL = (1, 132)
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
        status_topic = render.host_status(topics, online=False).topic
        self._window = PublishWindow(cfg.outbox_size, status_topic)
        self.outbox = self._window.outbox
        self.connects = 0
        self.connected = False
        self._v5 = cfg.protocol != "3.1.1"
        self._last_failure: str | None = None
        self._last_warned = 0.0
        self._flushing = 0
        self._hurry = asyncio.Event()  # set while a flush waits: reconnect at once

    @property
    def in_flight(self) -> int:
        """Publishes sent and not yet acknowledged by the broker."""
        return self._window.in_flight

    def on_drop(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(n)`` when overflow drops ``n`` records (to publish the counter)."""
        self._window.on_drop(callback)

    def publish(self, msg: Outgoing) -> None:
        """Queue one message for the broker; overflow is counted, never silent."""
        self._window.put(msg)

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
            self._window.begin()
            await self._send(client, render.host_status(self._topics, online=True))
            await self._serve(client)
        except (aiomqtt.MqttError, OSError):
            raise  # the connection failed; the daemon goes on and reconnects
        except BaseException:
            clean = self._window.offline_delivered
            raise
        finally:
            if clean:
                await disconnect(client)
            else:
                abort(client)

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = {tg.create_task(self._watch(client), name="mqtt-watch"),
                         tg.create_task(self._window.drain(functools.partial(self._send,
                                                                             client)),
                                        name="mqtt-drain")}
                await asyncio.wait(tasks)  # the body waits: see qmpdirty.cancel
        except ExceptionGroup as group:  # the connection's end, reported once
            raise first_error(group) from None

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Raise MqttError as soon as the connection drops (iteration ends then)."""
        async for _ in client.messages:
            pass

    async def _send(self, client: aiomqtt.Client, msg: Outgoing) -> None:
        await client.publish(
            msg.topic, msg.payload, qos=msg.qos, retain=msg.retain,
            properties=_properties(msg.is_json, msg.expiry_s) if self._v5 else None,
            timeout=PUBACK_TIMEOUT_S,
        )

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
                while self._window.pending or not self.connected:
                    await self._window.wait_drained()
            return True
        except TimeoutError:
            return False
        finally:
            self._flushing -= 1
            if not self._flushing:
                self._hurry.clear()


@functools.cache
def _properties(is_json: bool, expiry_s: int | None) -> Properties:
    """v5 content type and expiry; one shared object per combination (paho only
    reads them, and building one per message cost more than the publish)."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json" if is_json else "text/plain"
    if expiry_s:
        props.MessageExpiryInterval = expiry_s
    return props
