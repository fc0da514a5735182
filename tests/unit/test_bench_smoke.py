"""Every benchmark under bench/ still runs (tiny sizes, no timing asserts) and the
runner's table and target parsing work, so that ``make bench`` cannot rot."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import discover, meets, table

BENCHES = discover()


def test_benchmarks_are_discovered() -> None:
    assert "ranges" in BENCHES


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_quick_run_gives_well_formed_figures(name: str) -> None:
    figures = BENCHES[name](quick=True)
    assert figures
    for figure in figures:
        assert {"name", "value", "unit", "note"} <= figure.keys()
        assert isinstance(figure["value"], int | float) and figure["value"] >= 0
        meets(figure)  # a target, when present, parses
    assert name in table({name: figures})


@pytest.mark.parametrize(("target", "value", "expected"), [
    ("< 50", 10.0, True), ("< 50", 60.0, False), (">= 10", 10.0, True), ("> 10", 10.0, False),
    (None, 1.0, None),
])
def test_targets(target: str | None, value: float, expected: bool | None) -> None:
    figure: dict[str, Any] = {"name": "x", "value": value, "unit": "ms", "target": target}
    assert meets(figure) is expected
