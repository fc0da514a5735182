"""Retained state, then every new publish, for a live reader (shell): ``qmpdirty top``.

Stage: sink (the reading side). ``watch`` connects with the client of ``sinks.client``
(no will, no birth), subscribes to one filter at QoS 0 and hands every message, the
retained ones first, to a callback until cancelled. It must never publish: a reader
that sent a will or a birth would mark the host offline or online. Reconnecting is
the caller's choice (``cli.top`` retries): this returns or raises SinkError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

import aiomqtt

from qmpdirty.config.sections import MqttConfig
from qmpdirty.errors import SinkError
from qmpdirty.sinks.client import mqtt_client

#: Called with each message's topic and payload (``b""`` clears a retained topic).
OnMessage = Callable[[str, bytes], None]


async def watch(cfg: MqttConfig, topic_filter: str, on_message: OnMessage,
                connect_timeout_s: float, on_connected: Callable[[], None] | None = None
                ) -> None:
    """Subscribe to ``topic_filter`` and pass every message on, until cancelled.
    ``on_connected`` is called once connected, before the retained messages: a caller
    that reconnects drops what it knew there (the broker may have lost its retained
    state meanwhile). Raises SinkError when the broker cannot be reached within
    ``connect_timeout_s``, refuses us, or goes away."""
    try:
        client = mqtt_client(cfg, v5=cfg.protocol == "5", timeout_s=connect_timeout_s)
    except SinkError as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc.__cause__ or exc}") from exc.__cause__
    try:
        async with asyncio.timeout(connect_timeout_s):
            await client.__aenter__()
    except TimeoutError as exc:
        raise SinkError(f"MQTT {cfg.url}: no answer within {connect_timeout_s:g}s") from exc
    except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc}") from exc
    try:
        if on_connected is not None:
            on_connected()
        await client.subscribe(topic_filter, qos=0)
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                on_message(str(message.topic), bytes(payload))
    except aiomqtt.MqttError as exc:
        raise SinkError(f"MQTT {cfg.url}: {exc}") from exc
    finally:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
