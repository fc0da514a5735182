"""MqttSink under broker faults, against a real mosquitto (issue 12, items 3, 5 and 6).

* a crash (the sink cancelled before the daemon's ``offline`` went out) leaves the last
  will at once, over MQTT v5 and 3.1.1; a clean stop sends ``offline`` once, no will;
* per VM, nothing new arrives after a higher ``seq``, across twenty reconnects while
  records and retained state keep coming;
* connect attempts abandoned while the broker was frozen never come back to life when
  it wakes up (they took the session over and their wills marked the host offline);
* a flush reconnects at once when the broker is back, whatever the backoff had grown to;
* a broker that hangs up before CONNACK is noticed at once, not after the 10 s timeout.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import signal

import pytest

from qmpdirty.config.sections import MqttConfig
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.recorder import Received, Recorder
from qmpdirty.sinks.mqtt import MqttSink
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import Outgoing
from qmpdirty.telemetry.topics import Topics
from tests.support.gate import Gate, until
from tests.support.seqcheck import backwards

TOPICS = Topics.create("qmpdirty", "h")
STATUS = "qmpdirty/h/status"



async def start(cfg: MqttConfig, connect_timeout_s: float = 10.0
                ) -> tuple[MqttSink, asyncio.Task[None]]:
    sink = MqttSink(cfg, TOPICS, "test-sink", connect_timeout_s=connect_timeout_s)
    return sink, asyncio.create_task(sink.run(), name="test-sink")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def statuses(rec: Recorder) -> list[str]:
    return [m.text for m in rec.snapshot() if m.topic == STATUS]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_crash_leaves_the_will_at_once(broker: Mosquitto, recorder: Recorder,
                                               protocol: str) -> None:
    """Issue 12 item 3: a crash closed the connection with DISCONNECT, so the broker
    dropped the will and the host stayed ``online``. Cancelled without having delivered
    ``offline`` (what a crash does to the sink), the sink must leave the will behind."""
    _sink, task = await start(MqttConfig(url=broker.url, protocol=protocol, keepalive_s=60))
    await recorder.until(lambda _ms: statuses(recorder) == ["online"], 10, "birth")
    await stop(task)  # keepalive 60 s: only the will at close explains an ``offline`` now
    await recorder.until(lambda _ms: statuses(recorder) == ["online", "offline"], 2, "the will")


async def test_a_clean_stop_sends_offline_once_and_no_will(broker: Mosquitto,
                                                           recorder: Recorder) -> None:
    sink, task = await start(MqttConfig(url=broker.url))
    await recorder.until(lambda _ms: statuses(recorder) == ["online"], 10, "birth")
    sink.publish(render.host_status(TOPICS, online=False))
    assert await sink.flush(5)
    await stop(task)
    await asyncio.sleep(1.0)  # a will would arrive at once
    assert statuses(recorder) == ["online", "offline"]


# --- item 5: seq order per VM across reconnects ---------------------------------------------

VMS = ("a", "b")
RECONNECTS = 20


class Producer:
    """Stamps like the daemon: one ``seq`` counter per VM over records and retained state."""

    def __init__(self) -> None:
        self.seq = dict.fromkeys(VMS, 0)
        self.events: dict[str, set[int]] = {vm: set() for vm in VMS}
        self.latest: dict[str, bytes] = {}

    def next(self, vm: str, kind: str) -> Outgoing:
        self.seq[vm] += 1
        body = json.dumps({"seq": self.seq[vm], "vm": vm}).encode()
        retained = kind == "info"
        topic = f"qmpdirty/h/vm/{vm}/{kind if retained else 'event/E'}"
        if retained:
            self.latest[topic] = body
        else:
            self.events[vm].add(self.seq[vm])
        return Outgoing(topic, body, 1, retained, vm=vm)

    async def run(self, sink: MqttSink) -> None:
        while True:
            for vm in VMS:
                sink.publish(self.next(vm, "info" if random.random() < 0.2 else "event"))
            await asyncio.sleep(0.002)


def reconnected(sink: MqttSink, connects: int) -> bool:
    return sink.connects >= connects


def records(msgs: list[Received], vm: str) -> set[int]:
    return {json.loads(m.payload)["seq"] for m in msgs if m.topic == f"qmpdirty/h/vm/{vm}/event/E"}


async def test_each_vm_in_seq_order_across_twenty_reconnects(gate: Gate,
                                                             recorder: Recorder) -> None:
    """Issue 12 item 5: after a reconnect, retained state went first with its newest
    ``seq``, then the older records; a consumer de-duplicating by ``seq`` lost them."""
    sink, task = await start(MqttConfig(url=gate.url, reconnect_max_s=0.2))
    producer = Producer()
    await gate.open()
    await until(lambda: sink.connected)
    produce = asyncio.create_task(producer.run(sink), name="producer")
    try:
        for n in range(RECONNECTS):
            await asyncio.sleep(random.uniform(0.05, 0.15))
            await gate.shut()  # publishes in flight are cut; the producer goes on
            await asyncio.sleep(random.uniform(0.1, 0.3))
            await gate.open()
            await until(functools.partial(reconnected, sink, n + 2))
        produce.cancel()
        assert await sink.flush(20)
    finally:
        produce.cancel()
        await stop(task)
    # nothing lost either (the outbox is large enough), and the broker has the latest state
    got = await recorder.until(lambda ms: all(records(ms, vm) == producer.events[vm]
                                              for vm in VMS) and ms, 10, "every record")
    assert backwards(got) == []
    last = {m.topic: m.payload for m in got if m.topic.endswith("/info")}
    assert last == producer.latest  # the broker converged to the latest state
    assert sink.connects == RECONNECTS + 1


# --- item 6: a frozen broker, a stop -------------------------------------------------------


async def test_connects_abandoned_while_the_broker_was_frozen_stay_dead(
        broker: Mosquitto, recorder: Recorder) -> None:
    """Issue 12 item 6: attempts that timed out kept their socket, CONNECT sent; the
    broker read them on waking, they took the session over, and each one's will said
    ``offline``. Aborted with a reset, they never reach the broker."""
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        sink, task = await start(MqttConfig(url=broker.url, reconnect_max_s=0.2),
                                 connect_timeout_s=0.5)
        await asyncio.sleep(2.0)  # three or four attempts time out
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    try:
        await until(lambda: sink.connected)
        sink.publish(render.vm_status(TOPICS, "a", online=True))
        assert await sink.flush(5)
        await asyncio.sleep(1.0)  # stale sessions would be taken over by now
        assert statuses(recorder) == ["online"]
        assert sink.connects == 1 and sink.connected
    finally:
        await stop(task)


async def test_flush_reconnects_at_once_when_the_broker_returns(
        gate: Gate, recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 12 item 6: after a long outage the sink slept up to ``reconnect_max_s``
    between attempts, so a stop's flush ran out of time with the broker back."""
    caplog.set_level(logging.DEBUG, logger="qmpdirty.sinks.mqtt")
    sink, task = await start(MqttConfig(url=gate.url, reconnect_max_s=4.0))
    try:
        sink.publish(render.vm_status(TOPICS, "a", online=False))
        await until(lambda: "retrying in 4.0s" in caplog.text, 15)  # backoff at its longest
        await gate.open()
        assert await sink.flush(1.5)
    finally:
        await stop(task)
    await recorder.until(lambda ms: any(m.topic.endswith("/a/status") for m in ms), 5)


async def test_a_broker_that_hangs_up_before_connack_is_noticed_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A broker going down reads CONNECT and closes: aiomqtt waited for its whole 10 s
    connect timeout, so each broker restart that caught an attempt cost 10 s."""
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the CONNECT has arrived
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, logger="qmpdirty.sinks.mqtt")
    _sink, task = await start(MqttConfig(url=f"mqtt://127.0.0.1:{port}"), connect_timeout_s=10)
    try:
        await until(lambda: "before CONNACK" in caplog.text, 2)
    finally:
        await stop(task)
        server.close()
