"""MqttSink against a real mosquitto: birth/will, outbox, overflow, reconnect, auth, TLS."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from qmpdirty.config.sections import MqttConfig
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.recorder import Received, Recorder
from qmpdirty.sinks.mqtt import WINDOW, MqttSink
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import Outgoing
from qmpdirty.telemetry.topics import Topics
from tests.support.gate import Gate, until

TOPICS = Topics.create("qmpdirty", "h")


def record(n: int) -> Outgoing:
    return Outgoing(f"qmpdirty/h/vm/a/event/E{n}", json.dumps({"n": n}).encode(), 1, False,
                    True, 60)


def state(value: str) -> Outgoing:
    return Outgoing("qmpdirty/h/vm/a/info", json.dumps({"v": value}).encode(), 1, True)



async def start(cfg: MqttConfig) -> tuple[MqttSink, asyncio.Task[None]]:
    sink = MqttSink(cfg, TOPICS, "test-sink")
    return sink, asyncio.create_task(sink.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def payloads(msgs: list[Received], prefix: str) -> list[bytes]:
    return [m.payload for m in msgs if m.topic.startswith(prefix)]


async def test_birth_state_records_and_v5_properties(broker: Mosquitto, recorder: Recorder) -> None:
    sink, task = await start(MqttConfig(url=broker.url))
    try:
        sink.publish(state("one"))
        sink.publish(record(1))
        assert await sink.flush(10)
    finally:
        await stop(task)
    birth = recorder.wait_text("qmpdirty/h/status", "online", 5)
    assert birth.content_type == "text/plain"
    info = recorder.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/info")])[0]
    assert info.json == {"v": "one"} and info.content_type == "application/json"
    event = recorder.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/E1")])[0]
    assert event.expiry_s is not None and 0 < event.expiry_s <= 60
    late = Recorder(broker.port)  # a new subscriber gets the retained state
    try:
        got = late.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/info")], 5)
        assert got[0].retain and got[0].json == {"v": "one"}
    finally:
        late.close()


async def test_outbox_while_broker_away_then_flush_in_order(gate: Gate, recorder: Recorder) -> None:
    sink, task = await start(MqttConfig(url=gate.url, reconnect_max_s=0.3))
    try:
        for n in range(5):
            sink.publish(record(n))
        sink.publish(state("latest-while-away"))
        await asyncio.sleep(0.5)
        assert not sink.connected and len(sink.outbox) == 6
        await gate.open()
        assert await sink.flush(10)
    finally:
        await stop(task)
    msgs = recorder.wait_for(lambda ms: len(payloads(ms, "qmpdirty/h/vm/a/")) >= 6 and ms)
    assert payloads(msgs, "qmpdirty/h/vm/a/event/") == [json.dumps({"n": n}).encode()
                                                         for n in range(5)]
    assert recorder.last("/info").json == {"v": "latest-while-away"}  # type: ignore[union-attr]


async def test_overflow_drops_oldest_records_and_counts_them(gate: Gate,
                                                             recorder: Recorder) -> None:
    sink, task = await start(MqttConfig(url=gate.url, outbox_size=10, reconnect_max_s=0.3))
    drops: list[int] = []
    sink.on_drop(drops.append)
    try:
        for n in range(25):
            sink.publish(record(n))
        assert sink.outbox.dropped_total == 15 and sum(drops) == 15
        await gate.open()
        assert await sink.flush(10)
    finally:
        await stop(task)
    msgs = recorder.wait_for(lambda ms: len(payloads(ms, "qmpdirty/h/vm/a/event/")) >= 10 and ms)
    assert payloads(msgs, "qmpdirty/h/vm/a/event/") == [json.dumps({"n": n}).encode()
                                                         for n in range(15, 25)]


#: Below mosquitto's per-subscriber queue (max_queued_messages 1000): the broker would
#: drop the rest for a slow subscriber however well the sink did.
COUNT = 900


def numbers(msgs: list[Received]) -> list[int]:
    return [json.loads(m.payload)["n"] for m in msgs if "/event/" in m.topic]


async def test_publishes_overlap_and_arrive_in_order(broker: Mosquitto,
                                                     recorder: Recorder) -> None:
    sink, task = await start(MqttConfig(url=broker.url))
    peak = 0
    try:
        await until(lambda: sink.connected)
        for n in range(COUNT):
            sink.publish(record(n))
        while len(sink.outbox) or sink.in_flight:
            peak = max(peak, sink.in_flight)
            await asyncio.sleep(0)
        assert await sink.flush(10)
    finally:
        await stop(task)
    assert 1 < peak <= WINDOW  # more than one PUBACK awaited at once, never more than the window
    got = recorder.wait_for(lambda ms: len(numbers(ms)) >= COUNT and ms)
    assert numbers(got) == list(range(COUNT))


async def test_connection_cut_mid_stream_loses_and_reorders_nothing(gate: Gate,
                                                                    recorder: Recorder) -> None:
    sink, task = await start(MqttConfig(url=gate.url, reconnect_max_s=0.3))
    try:
        await gate.open()
        await until(lambda: sink.connected)
        for n in range(COUNT):
            sink.publish(record(n))
        await until(lambda: len(numbers(recorder.snapshot())) >= 100)
        await gate.shut()  # cut with publishes in flight
        await until(lambda: not sink.connected)
        assert len(sink.outbox) > 0 and sink.in_flight == 0  # in-flight ones given back
        await gate.open()
        assert await sink.flush(20)
    finally:
        await stop(task)
    got = numbers(recorder.wait_for(lambda ms: set(numbers(ms)) >= set(range(COUNT)) and ms))
    firsts = list(dict.fromkeys(got))  # at-least-once: duplicates allowed, gaps and reordering not
    assert firsts == list(range(COUNT))


async def test_retained_state_republished_after_broker_restart(broker: Mosquitto) -> None:
    sink, task = await start(MqttConfig(url=broker.url, reconnect_max_s=0.3))
    try:
        sink.publish(state("kept"))
        assert await sink.flush(10)
        connects = sink.connects
        broker.restart()  # no persistence: the broker forgets every retained message
        await until(lambda: sink.connects > connects and sink.connected)
        assert await sink.flush(10)
        fresh = Recorder(broker.port)
        try:
            got = await fresh.until(lambda ms: [m for m in ms if m.topic.endswith("/info")], 5)
            assert got[0].retain and got[0].json == {"v": "kept"}
            birth = await fresh.until(lambda ms: [m for m in ms if m.text == "online"], 5)
            assert birth[0].retain
        finally:
            fresh.close()
    finally:
        await stop(task)


async def test_last_will_when_the_connection_dies(gate: Gate, broker: Mosquitto) -> None:
    await gate.open()
    _sink, task = await start(MqttConfig(url=gate.url, keepalive_s=5, reconnect_max_s=5))
    watcher = Recorder(broker.port)
    try:
        await watcher.until(lambda ms: any(m.text == "online" for m in ms), 10, "birth")
        await gate.shut()  # the TCP connection drops without DISCONNECT
        await watcher.until(
            lambda ms: [m for m in ms if m.topic == "qmpdirty/h/status" and m.text == "offline"],
            10, "last will")
        # a live subscriber sees retain=0 (MQTT 3.3.1.3); a new one gets the retained will
        fresh = Recorder(broker.port)
        try:
            kept = await fresh.until(lambda ms: [m for m in ms if m.topic == "qmpdirty/h/status"],
                                     5, "retained status")
            assert kept[0].text == "offline" and kept[0].retain
        finally:
            fresh.close()
    finally:
        watcher.close()
        await stop(task)


def _passwd(tmp: Path, user: str, password: str) -> Path:
    path = tmp / "passwd"
    path.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True)
    path.chmod(0o600)
    return path


async def test_username_and_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    passwd = _passwd(tmp_path, "qd", "s3cret-value")
    with Mosquitto(extra_config=[f"password_file {passwd}"]) as b:
        b.config_path.write_text(b.config_path.read_text().replace("allow_anonymous true",
                                                                    "allow_anonymous false"))
        b.restart()
        good, task = await start(MqttConfig(url=b.url, username="qd", password_file=secret))
        try:
            await until(lambda: good.connected)
        finally:
            await stop(task)
        wrong = tmp_path / "wrong"
        wrong.write_text("nope\n")
        bad, task = await start(MqttConfig(url=b.url, username="qd", password_file=wrong,
                                           reconnect_max_s=0.2))
        try:
            await asyncio.sleep(1.0)
            assert not bad.connected and not task.done()  # refused, retrying, not crashed
        finally:
            await stop(task)


def _certs(tmp: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for IP 127.0.0.1."""
    ca_key, ca, key, csr, cert = (tmp / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))
    ext = tmp / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=qmpdirty test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    for p in (ca_key, key):
        p.chmod(0o644)
    return ca, cert, key


async def test_mqtts_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = _certs(tmp_path)
    from qmpdirty.demo.lab.qemu import free_port

    port = free_port()
    tls = [f"listener {port} 127.0.0.1", f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
    with Mosquitto(extra_config=tls):
        sink, task = await start(MqttConfig(url=f"mqtts://127.0.0.1:{port}", ca_file=ca))
        try:
            sink.publish(render.vm_status(TOPICS, "a", online=True))
            await until(lambda: sink.connected)
            assert await sink.flush(10)
        finally:
            await stop(task)
        (tmp_path / "other").mkdir()
        other_ca, _, _ = _certs(tmp_path / "other")
        wrong, task = await start(MqttConfig(url=f"mqtts://127.0.0.1:{port}", ca_file=other_ca,
                                             reconnect_max_s=0.2))
        try:
            await asyncio.sleep(1.0)
            assert not wrong.connected and not task.done()  # verification fails, retrying
        finally:
            await stop(task)
