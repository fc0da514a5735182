"""Retained state read back from the broker, for one-shot commands (shell).

Stage: sink (the reading side). ``read_retained`` connects with the client of
``sinks.client`` (no will, no birth), subscribes, collects what the broker has
retained and disconnects. ``qmpdirty admit`` is its caller. It must never publish:
a reader that sent a will or a birth would mark the host offline or online.
"""

from __future__ import annotations

import asyncio
import ssl

import aiomqtt

from qmpdirty.config import MqttConfig
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
            first = min(wanted).split("/")[0]
            barrier = first if first not in ("+", "#", "") else "qmpdirty"
            await client.subscribe(f"{barrier}/.qmpdirty-barrier", qos=0)
            subscribed = True
            await _collect(client, wanted, found)
    except TimeoutError as exc:
        if not subscribed:
            raise SinkError(f"MQTT {cfg.url}: no answer within {timeout_s:g}s") from exc
    except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc}") from exc
    return found


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
