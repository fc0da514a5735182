"""Adapter-tier fixtures: which event loops an async test runs on, and a gate to the broker.

A test module that sets ``EVENT_LOOPS = ("asyncio", "uvloop")`` runs each of its async
tests on both; every other module runs on asyncio's default loop, as before. The
daemon itself runs on uvloop (``cli.common.run_loop``), whose subprocess and socket
behaviour differs in places (see ``sinks.hook_process``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
import uvloop

from qmpdirty.demo.lab.broker import Mosquitto
from tests.support.gate import Gate

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    wanted = getattr(getattr(item, "module", None), "EVENT_LOOPS", ("asyncio",))
    return {name: LOOP_FACTORIES[name] for name in wanted}


@pytest.fixture
async def gate(broker: Mosquitto) -> AsyncIterator[Gate]:
    """A TCP gate in front of the test's broker, shut at the end."""
    g = Gate(broker.port)
    yield g
    await g.shut()
