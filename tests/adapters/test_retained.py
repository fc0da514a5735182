"""read_retained and scan_retained against a real mosquitto: filters, the barrier,
limits, and their errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from paho.mqtt import publish
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from qmpdirty.config.sections import MqttConfig
from qmpdirty.demo.lab import free_port
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.errors import SinkError
from qmpdirty.sinks.retained import _refused, read_retained, scan_retained


def retain(broker: Mosquitto, messages: dict[str, bytes]) -> None:
    publish.multiple([{"topic": t, "payload": p, "qos": 1, "retain": True}
                      for t, p in messages.items()], hostname="127.0.0.1", port=broker.port)


async def test_topics_and_filters_are_read_and_absent_ones_cost_no_timeout(
    broker: Mosquitto
) -> None:
    retain(broker, {"q/h1/status": b"online", "q/h1/vm/a/blockers": b"{}",
                    "q/h2/vm/a/blockers": b"[]", "q/h1/vm/b/blockers": b"no"})
    started = time.monotonic()
    found = await read_retained(MqttConfig(url=broker.url),
                                ["q/h1/status", "q/+/vm/a/blockers", "q/h1/vm/a/forecast"], 10)
    assert time.monotonic() - started < 5, "the barrier did not end the wait"
    assert found == {"q/h1/status": b"online", "q/h1/vm/a/blockers": b"{}",
                     "q/h2/vm/a/blockers": b"[]"}
    assert await read_retained(MqttConfig(url=broker.url), [], 10) == {}


async def test_an_unreachable_broker_is_a_sink_error() -> None:
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(SinkError, match=r"^MQTT mqtt://127\.0\.0\.1:\d+: "):
        await read_retained(cfg, ["q/#"], 2)


@pytest.mark.parametrize("setting", ["password_file", "ca_file"])
async def test_an_unreadable_file_is_named_like_a_broker_error(tmp_path: Path,
                                                                setting: str) -> None:
    missing = tmp_path / "missing"
    cfg = MqttConfig.model_validate({"url": "mqtts://127.0.0.1:1", setting: missing})
    with pytest.raises(SinkError) as caught:
        await read_retained(cfg, ["q/#"], 2)
    assert str(caught.value) == f"MQTT mqtts://127.0.0.1:1: [Errno 2] No such file or " \
        f"directory{': ' + repr(str(missing)) if setting == 'password_file' else ''}"


async def test_scan_lists_every_retained_topic_under_the_filter_past_the_queue_limits(
    broker: Mosquitto
) -> None:
    """3000 topics: more than mosquitto queues for a QoS 1 subscriber (1000), so the
    scan's QoS 0 is what gets them all, and all before the barrier."""
    many = {f"q/h1/vm/v{n}/info": b"{}" for n in range(3000)}
    retain(broker, {**many, "q/h1/vm/v1/status": b"online", "q/h2/vm/v1/status": b"online",
                    "q/h1/status": b"online"})
    started = time.monotonic()
    scan = await scan_retained(MqttConfig(url=broker.url), "q/h1/vm/#",
                               payloads_of="q/h1/vm/+/status", timeout_s=10, limit=10_000)
    assert time.monotonic() - started < 5
    assert scan.complete
    assert scan.found == {**dict.fromkeys(many, b""), "q/h1/vm/v1/status": b"online"}


async def test_scan_stops_at_its_limit_and_says_so(broker: Mosquitto) -> None:
    retain(broker, {f"q/h1/vm/v{n}/status": b"offline" for n in range(50)})
    scan = await scan_retained(MqttConfig(url=broker.url), "q/h1/vm/#",
                               payloads_of="q/h1/vm/+/status", timeout_s=10, limit=20)
    assert not scan.complete and len(scan.found) == 20
    assert set(scan.found.values()) == {b"offline"}
    empty = await scan_retained(MqttConfig(url=broker.url), "q/none/#", payloads_of="#",
                                timeout_s=10, limit=20)
    assert empty.complete and empty.found == {}


async def test_scan_of_an_unreachable_broker_is_a_sink_error() -> None:
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(SinkError, match=r"^MQTT mqtt://127\.0\.0\.1:\d+: "):
        await scan_retained(cfg, "q/#", payloads_of="#", timeout_s=2, limit=10)



def test_a_refused_subscription_is_told_from_a_granted_one() -> None:
    """Brokers that check read ACLs at SUBSCRIBE (EMQX, HiveMQ) answer 0x80 (3.1.1) or
    0x87 (v5). mosquitto 2 grants the subscription and delivers nothing instead, so
    this is checked on the SUBACK codes alone."""
    granted = [ReasonCode(PacketTypes.SUBACK, identifier=q) for q in (0, 1)]
    assert not _refused(granted) and not _refused([0, 1])
    assert _refused([*granted, ReasonCode(PacketTypes.SUBACK, "Not authorized")])
    assert _refused([0x80])
