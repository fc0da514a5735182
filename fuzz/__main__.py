"""``python -m fuzz [--cases N]``: hammer every parser of untrusted QMP input.

Targets: every reply translator (``qmp.translate``), the VFIO topology translation
(``qmp.topology_wire``/``topology_plan`` via their public functions), the
``info mtree -f -o`` parser and the event translator. Each target gets N cases of
arbitrary JSON values (and, for the parser, arbitrary and mtree-shaped text); the
only acceptable outcomes are a value or ``QmpReplyError``. Prints the case count
per target and every crash; exits 1 on any crash. Default N = 12,000 per target:
108,000 cases in all.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmpdirty.errors import QmpReplyError
from qmpdirty.qmp import translate
from qmpdirty.qmp.topology import mtree

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=20), inner,
                                                               max_size=8),
    max_leaves=40,
)
LINE = st.from_regex(
    r"  [0-9a-f]{16}-[0-9a-f]{16} \(prio -?\d{1,3}, (nv-)?(ram|ramd|rom|romd|i/o)\): "
    r"[ -~]{0,40}( @[0-9a-f]{16})?( owner:\{(dev|obj) (id|path)=[ -~]{0,20}\})?( kvm)?",
    fullmatch=True)
MTREE = st.lists(st.sampled_from(['FlatView #0', ' AS "memory", root: system', ' Root memory '
                                  'region: system']) | LINE | st.text(max_size=80),
                 max_size=30).map("\n".join)

TARGETS: dict[str, tuple[Callable[[Any], object], st.SearchStrategy[Any]]] = {
    "version": (translate.version_from, JSON),
    "identity": (lambda v: translate.identity_from(v, v, None), JSON),
    "migration": (translate.migration_snapshot_from, JSON),
    "migration-params": (translate.migration_params_from, JSON),
    "dirty-rate": (translate.dirty_rate_from, JSON),
    "event": (translate.event_from, JSON),
    "run-state": (translate.run_state_from, JSON),
    "capabilities": (translate.migration_events_from, JSON),
    "mtree": (mtree.parse_flat_views, MTREE),
}


def fuzz(name: str, cases: int) -> list[str]:
    """Run one target; return the crashes (repr of input and exception)."""
    target, strategy = TARGETS[name]
    crashes: list[str] = []

    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        try:
            target(value)
        except QmpReplyError:
            pass
        except Exception as exc:  # a crash: anything but a value or QmpReplyError
            crashes.append(f"{name}: {type(exc).__name__}: {exc} <- {value!r:.200}")

    run()
    return crashes


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz")
    p.add_argument("--cases", type=int, default=12_000, help="per target (9 targets)")
    p.add_argument("targets", nargs="*", default=list(TARGETS))
    args = p.parse_args()
    total, crashes = 0, []
    for name in args.targets:
        started = time.monotonic()
        found = fuzz(name, args.cases)
        total += args.cases
        crashes += found
        print(f"{name:18} {args.cases:>9,} cases  {len(found)} crashes  "
              f"{time.monotonic() - started:6.1f} s", flush=True)
    print(f"total {total:,} cases, {len(crashes)} crashes")
    for c in crashes[:20]:
        print("  " + c)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
