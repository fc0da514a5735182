"""Adapter-tier fixtures: which event loops an async test runs on.

A test module that sets ``EVENT_LOOPS = ("asyncio", "uvloop")`` runs each of its async
tests on both; every other module runs on asyncio's default loop, as before. The
daemon itself runs on uvloop (``cli.common.run_loop``), whose subprocess and socket
behaviour differs in places (see ``sinks.hook_process``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    wanted = getattr(getattr(item, "module", None), "EVENT_LOOPS", ("asyncio",))
    return {name: LOOP_FACTORIES[name] for name in wanted}
