"""``python -m fuzz [--cases N]``: hammer every parser of untrusted QMP input.

Targets: every reply translator (``qmp.translate``), the VFIO topology query
(``qmp.topology.query.TopologyQuery``, driven without a socket by ``exchange.drive``:
QEMU 10.0.2's recorded replies with hostile ones put in at drawn places, so every round
and every reply translator is reached), the ``info mtree -f -o`` parser and the event
translator. Each target gets N cases of arbitrary JSON values (and, for the parser,
arbitrary and mtree-shaped text; for the query, QMP error replies too); the only
acceptable outcomes are a value or ``QmpReplyError`` (and for the query, an error reply
it cannot do without: ``QmpCommandError``). Prints the case count per target and every
crash; exits 1 on any crash. Default N = 12,000 per target: 120,000 cases in all.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmpdirty.demo.lab.recorded_topology import Arguments, RecordedTopology
from qmpdirty.errors import QmpCommandError, QmpReplyError
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.topology import VFIO_TYPES
from qmpdirty.qmp import translate
from qmpdirty.qmp.topology import mtree
from qmpdirty.qmp.topology.exchange import Failed, Returned, drive
from qmpdirty.qmp.topology.query import TopologyQuery

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

#: QEMU 10.0.2's replies to a whole gather (``virtio-net-pci`` standing in for VFIO devices).
RECORDED = Path(__file__).resolve().parents[1] / "tests/data/topology/q35-intel-pxb.json"
#: Hostile replies by the position of the command they answer (a gather asks ~63); an
#: error reply mostly ends the gather at once, so values are drawn three times as often.
RETURNED = JSON.map(Returned)
FAILED = st.builds(Failed, st.sampled_from(["GenericError", "DeviceNotFound", "CommandNotFound"]),
                   st.text(max_size=40))
HOSTILE = st.dictionaries(st.integers(min_value=0, max_value=70),
                          RETURNED | RETURNED | RETURNED | FAILED, min_size=1, max_size=6)
GATHER = st.tuples(HOSTILE, st.none() | st.sampled_from([(8, 0, 0), (9, 1, 0), (10, 1, 0)]))


@functools.cache
def _recording() -> RecordedTopology:
    """QEMU 10.0.2's gather, read once for every case."""
    return RecordedTopology(RECORDED)


def gather(case: tuple[dict[int, object], QemuVersion | None]) -> object:
    """One topology gather with hostile replies at the drawn positions; an error reply
    the query cannot do without (``QmpCommandError``) is a correct outcome."""
    hostile, version = case
    asked = itertools.count()

    def answer(command: str, arguments: Arguments) -> object:
        return hostile.get(next(asked)) or _recording().answer(command, arguments)

    try:
        return drive(TopologyQuery(VFIO_TYPES | {"virtio-net-pci"}, version=version), answer)
    except QmpCommandError:
        return None


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
    "topology-query": (gather, GATHER),
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
    p.add_argument("--cases", type=int, default=12_000, help=f"per target ({len(TARGETS)} targets)")
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
