"""read_retained against a real mosquitto: filters, the barrier, and its errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from paho.mqtt import publish

from qmpdirty.config import MqttConfig
from qmpdirty.demo.lab import free_port
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.errors import SinkError
from qmpdirty.sinks.retained import read_retained


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
