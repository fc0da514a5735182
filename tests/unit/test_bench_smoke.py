"""Every benchmark under bench/ still runs (tiny sizes, no timing asserts) and the
runner's table and target parsing work, so that ``make bench`` cannot rot; and the
benchmarks (like the fuzzers and the lab) take nothing from ``tests/``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import discover, meets, table

BENCHES = discover()
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("folder", ["bench", "fuzz", "qmpdirty/demo"])
def test_nothing_outside_tests_imports_tests(folder: str) -> None:
    """What tests and benchmarks share lives in ``qmpdirty.demo.lab``, never in tests/."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] == "tests"], f"{path}:{node.lineno}"
