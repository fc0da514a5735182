"""Run qmpdirty's benchmarks: ``python -m bench [--quick] [NAME ...]`` (``make bench``).

Not part of the test suite (``tests/unit/test_bench_smoke.py`` only checks that every
benchmark still runs on tiny sizes). Every module ``bench/bench_<name>.py`` with a
``run(quick: bool = False) -> list[dict]`` is a benchmark: drop a file in to add one.
Each dict is one figure: ``name``, ``value``, ``unit``, ``note`` and optionally
``target``, written ``"< 50"`` or ``">= 10"`` in the figure's unit.

Prints a table (with ``ok`` / ``MISSED`` against the targets) and writes
``bench/results/<name>.json`` as each benchmark finishes, then ``latest.json``: every
benchmark's latest figures (each with its run's stamp).
"""

from __future__ import annotations

import argparse
import importlib
import json
import operator
import pkgutil
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PREFIX = "bench_"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}

Figure = dict[str, Any]


def discover() -> dict[str, Callable[..., list[Figure]]]:
    """``{name: run}`` for every ``bench/bench_<name>.py``, sorted by name."""
    found = {}
    for module in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda m: m.name):
        if module.name.startswith(PREFIX):
            loaded = importlib.import_module(f"bench.{module.name}")
            found[module.name.removeprefix(PREFIX)] = loaded.run
    return found


def meets(figure: Figure) -> bool | None:
    """Whether ``value`` meets ``target`` (None when there is no target)."""
    target = figure.get("target")
    if not target:
        return None
    for symbol, compare in _COMPARE.items():  # two-character operators first
        if str(target).startswith(symbol):
            return compare(float(figure["value"]), float(str(target)[len(symbol):]))
    raise ValueError(f"{figure['name']}: target {target!r} is not '< N', '>= N'...")


def table(results: dict[str, list[Figure]]) -> str:
    """The figures as an aligned text table."""
    rows = [("benchmark", "figure", "value", "unit", "target", "", "note")]
    for bench, figures in results.items():
        for f in figures:
            verdict = {True: "ok", False: "MISSED", None: ""}[meets(f)]
            rows.append((bench, f["name"], f"{f['value']:.4g}", f["unit"],
                         str(f.get("target") or ""), verdict, f.get("note", "")))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)),
                                row[6]]).rstrip() for row in rows)


def latest() -> dict[str, Any]:
    """Every benchmark's latest figures (``results/<name>.json``), each with its own
    run's stamp: running one benchmark updates it without dropping the others."""
    found: dict[str, Any] = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem != "latest":
            found[path.stem] = json.loads(path.read_text())
    return {"benchmarks": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("names", nargs="*", help="only these benchmarks (default: all)")
    args = parser.parse_args(argv)
    benches = discover()
    unknown = set(args.names) - set(benches)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {', '.join(benches)}",
              file=sys.stderr)
        return 2
    stamp = {"ts": time.time(), "python": platform.python_version(),
             "machine": platform.machine(), "quick": args.quick}
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, list[Figure]] = {}
    for name, run in benches.items():
        if args.names and name not in args.names:
            continue
        print(f"bench: running {name}...", file=sys.stderr, flush=True)
        began = time.monotonic()
        results[name] = figures = run(quick=args.quick)
        # written at once: a later benchmark that fails must not lose this one's figures
        (RESULTS / f"{name}.json").write_text(json.dumps({**stamp, "figures": figures}, indent=2))
        print(f"bench: {name} done in {time.monotonic() - began:.0f} s", file=sys.stderr,
              flush=True)
    (RESULTS / "latest.json").write_text(json.dumps(latest(), indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
