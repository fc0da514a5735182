"""The MQTT client of both sinks: broker, credentials, TLS and protocol (shell).

Stage: sink. One builder for the publisher (``sinks.mqtt``) and the retained-state
reader (``sinks.retained``), so that both read the password file and the TLS files the
same way. A file that cannot be read is a ``SinkError`` raised ``from`` the ``OSError``
or ``ssl.SSLError`` (the reader reports that cause in its own words). It builds a
client and nothing else: it must not connect, publish or subscribe.
"""

from __future__ import annotations

import socket
import ssl

import aiomqtt

from qmpdirty.config import MqttConfig, read_secret
from qmpdirty.errors import SinkError
from qmpdirty.telemetry.message import Outgoing

#: Nagle would hold a small publish until the broker ACKs the previous one (up to a
#: delayed ACK, 40 ms): the latency of every event, for nothing.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def mqtt_client(
    cfg: MqttConfig, *, v5: bool, timeout_s: float, identifier: str | None = None,
    will: Outgoing | None = None, window: int | None = None,
) -> aiomqtt.Client:
    """A client for ``cfg``'s broker, MQTT v5 or 3.1.1.

    The publisher passes its ``identifier``, its last ``will`` and its in-flight
    ``window``: it then also gets TCP_NODELAY, and a full window is not a warning. The
    reader passes none of them (a random id, no will: it must not mark the host
    offline). Raises SinkError when the password or TLS files cannot be read.
    """
    password = _password(cfg)
    client = aiomqtt.Client(
        hostname=cfg.host, port=cfg.port, username=cfg.username, password=password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain) if will else None,
        keepalive=cfg.keepalive_s, tls_context=_tls(cfg), timeout=timeout_s,
        max_inflight_messages=window, socket_options=NODELAY if window else None,
    )
    if window:
        client.pending_calls_threshold = window
    return client


def _password(cfg: MqttConfig) -> str | None:
    if cfg.password_file is None:
        return None
    try:
        return read_secret(cfg.password_file)
    except OSError as exc:
        raise SinkError(f"mqtt.password_file: cannot read: {exc.strerror}") from exc


def _tls(cfg: MqttConfig) -> ssl.SSLContext | None:
    if not cfg.tls:
        return None
    try:
        tls = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if cfg.cert_file and cfg.key_file:
            tls.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"mqtt TLS files: {exc}") from exc
    return tls
