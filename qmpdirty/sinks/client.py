"""The MQTT client of both sinks: broker, credentials, TLS and protocol (shell).

Stage: sink. One builder for the publisher (``sinks.mqtt``) and the retained-state
reader (``sinks.retained``), so that both read the password file and the TLS files the
same way. A file that cannot be read is a ``SinkError`` raised ``from`` the ``OSError``
or ``ssl.SSLError`` (the reader reports that cause in its own words).

It also opens and ends the publisher's connections, because *how* a connection ends
decides what the broker does with the last will and with a CONNECT still on its way:
* ``connect``: an attempt that fails, times out or is cancelled is ``abort``-ed.
  aiomqtt leaves such a socket open with its CONNECT sent; a broker that was frozen
  reads it when it wakes up, and that stale client takes the session over (and its
  will marks the host ``offline``) while the daemon's real connection is live. A
  connection the broker closes before CONNACK fails at once (aiomqtt would wait for
  its whole timeout: 10 s lost at every broker restart that caught an attempt);
* ``disconnect``: DISCONNECT, so the broker discards the will (a clean end);
* ``abort``: close with a TCP reset and no DISCONNECT. The broker publishes the will
  of a live connection at once, and drops a connection it has not accepted yet
  without reading its CONNECT (measured on mosquitto 2.0.21: a plain close still
  let the CONNECT through).
It must not publish or subscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from qmpdirty.cancel import first_error
from qmpdirty.config.load import read_secret
from qmpdirty.config.sections import MqttConfig
from qmpdirty.errors import SinkError
from qmpdirty.telemetry.message import Outgoing

#: Nagle would hold a small publish until the broker ACKs the previous one (up to a
#: delayed ACK, 40 ms): the latency of every event, for nothing.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: Seconds a DISCONNECT may take to be written (a stop has a deadline).
DISCONNECT_TIMEOUT_S = 0.5
#: SO_LINGER on, 0 s: ``close`` sends a reset and discards what was not sent.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


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


async def connect(client: aiomqtt.Client) -> None:
    """Connect ``client`` (CONNECT, CONNACK). Raises what aiomqtt raises, or MqttError
    at once when the broker closes the connection before CONNACK (a broker going down:
    aiomqtt would wait for its whole timeout). An attempt that does not succeed is
    aborted first, so the broker never acts on its CONNECT."""
    lost = asyncio.Event()
    _on_socket_close(client, lost)
    try:
        async with asyncio.TaskGroup() as tg:
            entering = tg.create_task(client.__aenter__(), name="mqtt-connect")
            watching = tg.create_task(_fail_when(lost), name="mqtt-connect-watch")
            entering.add_done_callback(lambda _done: watching.cancel())
            await asyncio.wait({entering, watching})  # the body waits: see qmpdirty.cancel
    except BaseExceptionGroup as group:
        abort(client)
        raise first_error(group) from None
    except BaseException:
        abort(client)
        raise


def _on_socket_close(client: aiomqtt.Client, lost: asyncio.Event) -> None:
    """Set ``lost`` when paho closes ``client``'s socket (after aiomqtt's own callback)."""
    loop = asyncio.get_running_loop()
    paho_client = client._client
    inner = paho_client.on_socket_close

    def closed(c: paho.Client, userdata: Any, sock: Any) -> None:
        if inner is not None:
            inner(c, userdata, sock)
        loop.call_soon_threadsafe(lost.set)

    paho_client.on_socket_close = closed


async def _fail_when(lost: asyncio.Event) -> None:
    await lost.wait()
    raise aiomqtt.MqttError("the broker closed the connection before CONNACK")


async def disconnect(client: aiomqtt.Client) -> None:
    """End a connection with DISCONNECT (no will). A connection that cannot send even
    that within ``DISCONNECT_TIMEOUT_S`` is aborted instead of left open."""
    try:
        async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
            await client.__aexit__(None, None, None)
    except (aiomqtt.MqttError, TimeoutError):
        abort(client)
    except BaseException:  # cancelled meanwhile
        abort(client)
        raise


def abort(client: aiomqtt.Client) -> None:
    """Close ``client``'s connection now: a TCP reset, no DISCONNECT (see the module
    docstring). Idempotent; a client without a socket is left as it is."""
    paho_client = client._client  # aiomqtt has no public handle on its paho client
    sock = paho_client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket too: no close_notify either
        with contextlib.suppress(OSError):  # a socket the peer closed: just close it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    # paho's own close also takes the socket out of the event loop (aiomqtt's callback)
    paho_client._sock_close()
