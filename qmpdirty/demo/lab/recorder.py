"""An MQTT subscriber that records everything it receives, for tests and benchmarks.

Uses paho directly (an observer's own client, independent of the daemon's aiomqtt
sink), on paho's network thread; ``wait_for`` polls the record with a deadline and
``until`` does the same without blocking an event loop. Must not: publish.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.time() on receipt
    content_type: str | None = None
    expiry_s: int | None = None

    @property
    def text(self) -> str:
        return self.payload.decode()

    @property
    def json(self) -> dict[str, Any]:
        value = json.loads(self.payload)
        assert isinstance(value, dict)
        return value


class Recorder:
    """Subscribes to ``topic_filter`` and keeps every message, in arrival order."""

    def __init__(self, port: int, topic_filter: str = "qmpdirty/#", client_id: str = "",
                 clean: bool = True) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filter = topic_filter
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        props = None
        if not clean:  # v5: a session outlives the connection only with an expiry interval
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", port, clean_start=clean, properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"could not subscribe on port {port}")

    def _on_connect(self, client: paho.Client, *_a: object) -> None:
        client.subscribe(self._filter, qos=1)

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        props = msg.properties
        content_type = getattr(props, "ContentType", None)
        expiry = getattr(props, "MessageExpiryInterval", None)
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          time.time(), content_type, expiry))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def on(self, suffix: str) -> list[Received]:
        """Messages whose topic ends with ``suffix``."""
        return [m for m in self.snapshot() if m.topic.endswith(suffix)]

    def last(self, suffix: str) -> Received | None:
        found = self.on(suffix)
        return found[-1] if found else None

    def wait_for(self, predicate: Callable[[list[Received]], Any], timeout_s: float = 30.0,
                 what: str = "condition") -> Any:
        """Poll until ``predicate(messages)`` is truthy; return its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate(self.snapshot())
            if value:
                return value
            if time.monotonic() > deadline:
                topics = sorted({m.topic for m in self.snapshot()})
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; "
                                     f"topics seen: {topics}")
            time.sleep(0.02)

    async def until(self, predicate: Callable[[list[Received]], Any], timeout_s: float = 30.0,
                    what: str = "condition") -> Any:
        """``wait_for`` for async tests: sleeps without blocking the event loop."""
        import asyncio

        deadline = time.monotonic() + timeout_s
        while not (value := predicate(self.snapshot())):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            await asyncio.sleep(0.02)
        return value

    def wait_text(self, suffix: str, text: str, timeout_s: float = 30.0,
                  after: float = 0.0) -> Received:
        """The first message on ``...suffix`` with payload ``text`` received after ``after``."""
        def found(msgs: list[Received]) -> Received | None:
            return next((m for m in msgs if m.topic.endswith(suffix) and m.text == text
                         and m.at >= after), None)
        result: Received = self.wait_for(found, timeout_s, f"{suffix} = {text}")
        return result

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
