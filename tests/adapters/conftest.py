"""Adapter-tier fixtures: which event loops an async test runs on, a gate to the broker,
and HookRunners started for a test.

A test module that sets ``EVENT_LOOPS = ("asyncio", "uvloop")`` runs each of its async
tests on both; every other module runs on asyncio's default loop, as before. The
daemon itself runs on uvloop (``cli.common.run_loop``), whose subprocess and socket
behaviour differs in places (see ``sinks.hook_process``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop

from qmpdirty.config.load import Config
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.sinks.hooks import HookRunner
from tests.support.gate import Gate
from tests.support.hook_scripts import Result, Start

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


@pytest.fixture
async def start_hooks() -> AsyncIterator[Start]:
    """Starts HookRunners for hooks on host ``testhost``, with their results; all are
    cancelled at the end."""
    tasks: list[asyncio.Task[None]] = []

    async def make(hooks: list[dict[str, Any]], **runner: Any) -> tuple[HookRunner, list[Result]]:
        results: list[Result] = []
        cfg = Config(hook=hooks, hooks=runner, host={"name": "testhost"})
        hook_runner = HookRunner(cfg, lambda *r: results.append(r))
        tasks.append(asyncio.create_task(hook_runner.run()))
        return hook_runner, results

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
