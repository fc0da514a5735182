"""Retained state read back from the broker, by short-lived readers (shell).

Stage: sink (the reading side). ``read_retained`` connects with the client of
``sinks.client`` (no will, no birth), subscribes, collects what the broker has
retained and disconnects; ``qmpdirty admit`` is its caller. ``scan_retained`` lists
every retained topic under one filter, bounded in time and count; the daemon's
forgetting (``daemon.forget``) reads its own host's VM subtree with it at start. Both
must never publish: a reader that sent a will or a birth would mark the host offline
or online.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from qmpdirty.config.sections import MqttConfig
from qmpdirty.errors import SinkError
from qmpdirty.sinks.client import mqtt_client
from qmpdirty.telemetry.topics import topic_matches

#: After the barrier, how long to wait for a retained message a broker sent late.
RETAINED_GRACE_S = 0.2


async def read_retained(cfg: MqttConfig, topics: list[str], timeout_s: float) -> dict[str, bytes]:
    """Retained payloads by topic: connect, subscribe to ``topics`` (topics or filters
    with ``+``/``#``), collect until every one has a message or ``timeout_s`` passed,
    disconnect. A topic with nothing retained is absent from the result.

    A second SUBSCRIBE is a barrier: a broker sends retained messages right after the
    SUBACK, so by the barrier's SUBACK every retained message is queued here and an
    absent topic costs ``RETAINED_GRACE_S``, not the timeout. Raises SinkError when the
    broker cannot be reached (or refuses us) within ``timeout_s``.
    """
    wanted = frozenset(topics)
    found: dict[str, bytes] = {}
    if not wanted:
        return found
    subscribed = False
    try:
        async with asyncio.timeout(timeout_s), _client(cfg, timeout_s) as client:
            await client.subscribe([(topic, 1) for topic in sorted(wanted)])
            await client.subscribe(_barrier(min(wanted)), qos=0)
            subscribed = True
            await _collect(client, wanted, found)
    except TimeoutError as exc:
        if not subscribed:
            raise SinkError(f"MQTT {cfg.url}: no answer within {timeout_s:g}s") from exc
    except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc}") from exc
    return found


@dataclass(frozen=True, slots=True)
class RetainedScan:
    """What ``scan_retained`` found: every retained topic, with its payload when the
    topic matched ``payloads_of`` (else ``b""``), and whether that is all of them."""

    found: dict[str, bytes]
    complete: bool


async def scan_retained(cfg: MqttConfig, topic_filter: str, *, payloads_of: str,
                        timeout_s: float, limit: int) -> RetainedScan:
    """Every topic the broker has retained under ``topic_filter``, at most ``limit``
    of them, within ``timeout_s``; payloads are kept only for topics matching
    ``payloads_of`` (a filter), so memory stays ``limit`` topics.

    Subscribes at QoS 0, so that the broker's in-flight window and queue limits for
    QoS 1 (mosquitto: 20 and 1000) neither hold back nor drop retained messages, and
    the barrier of ``read_retained`` stays behind all of them. Live messages are not
    taken. ``complete`` is False when ``limit`` or ``timeout_s`` cut the scan short.
    Raises SinkError when the broker cannot be reached (or refuses us, or refuses to
    let us read ``topic_filter``) in time.
    """
    found: dict[str, bytes] = {}
    scan = RetainedScan(found, complete=False)
    subscribed = False

    def keep(message: aiomqtt.Message) -> bool:
        """Take one message; False once ``limit`` topics are known."""
        topic, payload = str(message.topic), message.payload
        if not message.retain or not isinstance(payload, bytes | bytearray) or not payload:
            return True
        if topic not in found and len(found) >= limit:
            return False
        found[topic] = bytes(payload) if topic_matches(payloads_of, topic) else b""
        return True

    try:
        async with asyncio.timeout(timeout_s), _client(cfg, timeout_s) as client:
            if _refused(await client.subscribe(topic_filter, qos=0)):
                raise SinkError(f"MQTT {cfg.url}: not allowed to read {topic_filter}")
            await client.subscribe(_barrier(topic_filter), qos=0)
            subscribed = True
            for _ in range(len(client.messages)):
                if not keep(await anext(client.messages)):
                    return scan
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETAINED_GRACE_S):
                    while keep(await anext(client.messages)):
                        pass
                    return scan
    except TimeoutError as exc:
        if not subscribed:
            raise SinkError(f"MQTT {cfg.url}: no answer within {timeout_s:g}s") from exc
        return scan
    except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc}") from exc
    return RetainedScan(found, complete=True)


def _refused(granted: Sequence[int | ReasonCode]) -> bool:
    """A SUBACK that refuses the subscription (an ACL): 0x80 or more, v5 or 3.1.1."""
    return any(int(code.value if isinstance(code, ReasonCode) else code) >= 0x80
               for code in granted)


def _barrier(topic_filter: str) -> str:
    """A topic nobody publishes, under the filter's first level (a broker's ACL is
    likelier to allow that): its SUBACK comes after every retained message before it."""
    first = topic_filter.split("/", maxsplit=1)[0]
    return f"{first if first not in ('+', '#', '') else 'qmpdirty'}/.qmpdirty-barrier"


def _client(cfg: MqttConfig, timeout_s: float) -> aiomqtt.Client:
    """The reader's client: v5 only when configured so (``auto`` reads with 3.1.1). An
    unreadable file is reported like a broker that cannot be reached."""
    try:
        return mqtt_client(cfg, v5=cfg.protocol == "5", timeout_s=timeout_s)
    except SinkError as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc.__cause__ or exc}") from exc.__cause__


async def _collect(client: aiomqtt.Client, wanted: frozenset[str], found: dict[str, bytes]
                   ) -> None:
    """Take what is queued; wait ``RETAINED_GRACE_S`` more only if a topic is missing.
    A newer (live) message on a wanted topic replaces its retained one."""
    def keep(message: aiomqtt.Message) -> None:
        topic, payload = str(message.topic), message.payload
        if isinstance(payload, bytes | bytearray) and any(topic_matches(f, topic)
                                                          for f in wanted):
            found[topic] = bytes(payload)

    def complete() -> bool:
        return all(any(topic_matches(f, t) for t in found) for f in wanted)

    for _ in range(len(client.messages)):
        keep(await anext(client.messages))
    try:
        async with asyncio.timeout(RETAINED_GRACE_S):
            while not complete():
                keep(await anext(client.messages))
    except TimeoutError:
        pass
