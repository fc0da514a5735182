"""One VM's failure never reaches the fleet: neither in its session nor in its cleanup."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pytest

from qmpdirty.daemon import fleet


class _Session:
    closed = False

    async def close(self) -> str | None:
        self.closed = True
        return "message larger than 10 MiB"


class _Watch:
    class vm:
        name = "vm1"

    def session_lost(self, offline: bool = True) -> None:
        raise TypeError("a bug while publishing offline")


class _Ctx:
    released: ClassVar[list[Any]] = []

    def release(self, vm: Any, owner: Any) -> None:
        self.released.append((vm, owner))


async def test_cleanup_failure_is_logged_and_the_session_still_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        fleet._end_session(_Watch(), failed=False, label="unix:/x")  # type: ignore[arg-type]
    assert "publishing the end of the session failed" in caplog.text
    assert (await _Session().close()) == "message larger than 10 MiB"  # what close reports


async def test_firewall_swallows_and_logs_any_error(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> str | None:
        raise RuntimeError("unexpected")

    with caplog.at_level(logging.ERROR):
        failure = await fleet._firewalled(boom(), "unix:/y")
    assert "unix:/y: VM task failed; other VMs are unaffected" in caplog.text
    assert failure == "RuntimeError('unexpected')"
