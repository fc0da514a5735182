"""The long fuzz run's properties, briefly, in the suite: no parser of QMP input crashes."""

from __future__ import annotations

import pytest

from fuzz.__main__ import TARGETS, fuzz


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_returns_or_raises_reply_error(target: str) -> None:
    assert fuzz(target, 150) == []
