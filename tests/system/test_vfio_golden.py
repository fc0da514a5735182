"""The VFIO golden cases end to end: real QEMU, the VFIO stand-in, fake hosts, the real CLI.

One QEMU 10.0.2 (``golden.QEMU_ARGS``, stopped) serves every case: the stand-in
(``qmpdirty/demo/lab/vfio_standin.py``) listens on one socket per case and presents that
case's VM (version, devices, BARs, blockers) over it. Each host group of
``golden.HOSTS`` gets one fake host tree and one ``qmpdirty run`` with a ``[[vm]]``
entry per case (BDFs are unique across cases, so per-BDF ``[[device_caps]]`` do not
collide). So the whole table costs one QEMU, one broker and four daemons; each case
is one parametrised test reading the retained ``tracking`` / ``blockers`` payloads,
which must equal the hand-written expectation and ``qmpdirty probe --json`` (run once
per case, four at a time) minus ``ts``/``seq``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.cli.common import READ_ONLY
from qmpdirty.config.address import QmpAddress
from qmpdirty.demo.lab import end_child
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import QMPDIRTY, DaemonProcess, base_config, vm_topic
from qmpdirty.demo.lab.fakehost import build
from qmpdirty.demo.lab.recorder import Received, Recorder
from qmpdirty.demo.lab.vfio_lab import StandInThread, start_qemu
from qmpdirty.demo.lab.vfio_standin import Endpoint
from qmpdirty.facts.topology import VmTopology
from qmpdirty.qmp.gather import gather_topology
from qmpdirty.qmp.session import QmpSession
from tests.support import golden, golden_v10
from tests.support.golden import Golden

pytestmark = pytest.mark.system

CASES = golden.all_cases()
EVERY = (*CASES, *golden_v10.LIVE)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "golden-cases.md"
Payload = dict[str, Any]


@dataclass
class Bed:
    """Everything the module's tests share."""

    standin: StandInThread
    recorder: Recorder
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)  # host group -> config
    probes: dict[str, Payload] = field(default_factory=dict)

    def last(self, case: str, topic: str) -> Payload:
        message = self.recorder.last(vm_topic(case, topic))
        assert message is not None, f"{case}: nothing on {topic}"
        return message.json


def _config(broker: Mosquitto, root: Path, group: str, cases: list[Golden],
            socks: dict[str, Path]) -> dict[str, Any]:
    tree = build(root / group, replace(golden.HOSTS[group],
                                       devices=tuple(f for c in cases for f in c.facts)))
    caps = [*golden.GROUP_CAPS.get(group, ()), *(cap for c in cases for cap in c.caps)]
    return base_config(
        broker, vm=[{"name": c.name, "qmp": f"unix:{socks[c.name]}"} for c in cases],
        host={"sysfs_root": str(tree.sysfs), "debugfs_root": str(tree.debugfs),
              "proc_root": str(tree.proc), "boot_root": str(tree.boot)},
        mqtt={"client_id": f"qmpdirty-golden-{group}"},  # one id each, or they evict each other
        qmp={"command_timeout_s": 15.0}, vfio={"refresh_interval_s": 60.0, "debounce_s": 0.2,
                                                "hotplug_poll_s": 1.0},
        device_caps=caps)


def _published(bed: Bed) -> None:
    """Wait until every VM has retained tracking and blockers."""
    def done(messages: list[Received]) -> bool:
        topics = {m.topic for m in messages}
        return all(vm_topic(c.name, t) in topics for c in EVERY for t in ("tracking", "blockers"))
    bed.recorder.wait_for(done, 60, "tracking and blockers of every golden VM")


def _probe(bed: Bed, case: Golden) -> Payload:
    endpoint = bed.endpoints[case.name]
    out = subprocess.run([QMPDIRTY, "probe", "--qmp", f"unix:{endpoint.path}", "--json",
                          "--config", str(bed.configs[case.host])],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: Payload = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    root = tmp_path_factory.mktemp("golden")
    sockets = Path(tempfile.mkdtemp(prefix="qd-golden-", dir="/tmp"))
    with contextlib.ExitStack() as stack:
        qemu = start_qemu(sockets / "qemu.sock", golden.QEMU_ARGS, root / "qemu.log")
        stack.callback(end_child, qemu)
        standin = StandInThread(sockets / "qemu.sock")
        stack.callback(standin.close)
        broker = stack.enter_context(Mosquitto())
        recorder = Recorder(broker.port)
        stack.callback(recorder.close)
        bed = Bed(standin, recorder)
        for case in EVERY:
            bed.endpoints[case.name] = standin.serve(sockets / f"{case.name}.sock",
                                                     case.presented)
        socks = {name: e.path for name, e in bed.endpoints.items()}
        for group in golden.HOSTS:
            members = [c for c in EVERY if c.host == group]
            workdir = root / f"daemon-{group}"
            workdir.mkdir()
            daemon = DaemonProcess(workdir, _config(broker, root, group, members, socks))
            bed.configs[group] = daemon.config
            stack.callback(daemon.close)
            stack.callback(daemon.stop)
            daemon.start()
        _published(bed)
        with ThreadPoolExecutor(4) as pool:
            bed.probes = dict(zip([c.name for c in CASES],
                                  pool.map(lambda c: _probe(bed, c), CASES), strict=True))
        yield bed
        assert standin.failures == [], standin.failures


# --- checks ------------------------------------------------------------------------------


def _without_stamp(payload: Payload) -> Payload:
    return {k: v for k, v in payload.items() if k not in ("ts", "seq")}


def check_tracking(case: Golden, tracking: Payload) -> None:
    assert tracking["qemu_version"] == ".".join(map(str, case.scenario.version))
    assert [(d["qom_path"], d["mode"]) for d in tracking["devices"]] == list(case.modes)
    assert {c["id"]: (c["mode"], tuple(c["devices"])) for c in tracking["containers"]} == {
        b.id: (b.mode, b.devices) for b in case.containers}
    assert tracking["realize_errors"] == []


def check_blockers(case: Golden, blockers: Payload) -> None:
    assert [p["text"] for p in blockers["predicted"]] == list(case.expected_predicted)
    assert blockers["observed"] == list(case.observed)
    assert blockers["migratable"] is (not case.observed)


def check_basis(case: Golden, tracking: Payload, blockers: Payload) -> None:
    """How each mode and each predicted blocker was reached, and the facts named."""
    assert [(d["qom_path"], d["basis"]) for d in tracking["devices"]] == list(
        zip((p for p, _ in case.modes), case.expected_bases, strict=True))
    assert [p["basis"] for p in blockers["predicted"]] == list(case.expected_blocker_bases)
    facts = {(f["device"], f["name"]): (f["value"], f["basis"])
             for d in tracking["devices"] for f in d["facts"]}
    for path, name, value, basis in case.named_facts:
        assert facts.get((path, name)) == (value, basis), (path, name, facts)
    for d in tracking["devices"]:
        assert d["basis_reason"], d


def check_agreement(case: Golden, blockers: Payload) -> None:
    assert blockers["agree"] is (set(case.expected_predicted) == set(case.observed))
    assert blockers["unexpected"] == list(case.unexpected)
    assert blockers["missing"] == list(case.missing)
    assert blockers["unmodelled"] == []
    assert {(u["device"], u["fact"]) for u in blockers["unknown_facts"]} == set(case.unknown)


def ranges_of(tracking: Payload) -> dict[str, Payload]:
    return {c["id"]: {"ranges": [(r["iova"], r["length"]) for r in c["ranges"]],
                      "fits": c["fits"],
                      "optimal": None if c["optimal_ranges"] is None else
                      [(r["iova"], r["length"]) for r in c["optimal_ranges"]]}
            for c in tracking["containers"]}


def expected_ranges(case: Golden) -> dict[str, Payload]:
    return {b.id: {"ranges": list(b.ranges), "fits": b.fits,
                   "optimal": None if b.optimal is None else list(b.optimal)}
            for b in case.containers}


# --- the golden table ------------------------------------------------------------------------


def cases_for(aspect: str, only: Any = None) -> list[Any]:
    """The cases as parameters; those exposing a known engine bug in ``aspect`` are
    strict xfails citing it (``golden.ENGINE_BUGS``)."""
    return [pytest.param(c, id=c.name, marks=pytest.mark.xfail(
                strict=True, reason=golden.ENGINE_BUGS[aspect])) if aspect in c.bugs
            else pytest.param(c, id=c.name) for c in CASES if only is None or only(c)]


@pytest.mark.parametrize("case", cases_for("case"))
def test_golden_case(bed: Bed, case: Golden) -> None:
    """Modes in realize order, containers and engines, predicted and observed blocker
    texts; ``qmpdirty probe --json`` publishes the same payloads as the daemon."""
    assert bed.standin.failures == []
    tracking, blockers = bed.last(case.name, "tracking"), bed.last(case.name, "blockers")
    check_tracking(case, tracking)
    check_blockers(case, blockers)
    check_basis(case, tracking, blockers)
    probe = bed.probes[case.name]
    assert _without_stamp(probe["tracking"]) == _without_stamp(tracking)
    assert _without_stamp(probe["blockers"]) == _without_stamp(blockers)


@pytest.mark.parametrize("case", cases_for("agree"))
def test_golden_agreement(bed: Bed, case: Golden) -> None:
    """``agree`` true (the stand-in reports what QEMU would), nothing missing/unexpected."""
    check_agreement(case, bed.last(case.name, "blockers"))


@pytest.mark.parametrize("case", cases_for("complete"))
def test_golden_complete(bed: Bed, case: Golden) -> None:
    """``complete`` is false exactly when a mode rests on a fact nobody could know."""
    tracking = bed.last(case.name, "tracking")
    assert tracking["complete"] is case.complete, [d["reasons"] for d in tracking["devices"]]


@pytest.mark.parametrize("case", cases_for(
    "ranges", lambda c: any(b.mode == "device" for b in c.containers)))
def test_golden_ranges(bed: Bed, case: Golden) -> None:
    """DMA-logging ranges, fit and optimal plan of each device-logging container."""
    assert ranges_of(bed.last(case.name, "tracking")) == expected_ranges(case)


def test_qemus_word_overrides_a_wrong_config(bed: Bed) -> None:
    """[[device_caps]] wrongly claims migration for a plain vfio-pci device; QEMU's
    blocker settles it: the prediction is revised and says so."""
    tracking = bed.last("v10.2-config-wrong", "tracking")
    migration = next(f for f in tracking["devices"][0]["facts"] if f["name"] == "migration")
    assert migration["basis"] == "qemu" and migration["value"] is False
    assert migration["reason"].endswith("said yes, overridden by QEMU")
    assert bed.last("v10.2-config-wrong", "blockers")["agree"] is True


def test_disagreement_names_the_unknown_facts(bed: Bed) -> None:
    """QEMU 8.0's catch-all names no device: the prediction cannot be revised, and the
    payload names what could not be known (device reasons and ``unknown_facts``)."""
    blockers = bed.last("inf-v8.0-unattributed", "blockers")
    assert blockers["agree"] is False
    assert blockers["unexpected"] == ["VFIO device doesn't support migration"]
    assert any("which ones could not be known" in u["reason"] for u in blockers["unknown_facts"])
    probe = bed.probes["inf-v8.0-unattributed"]["blockers"]
    assert probe["unknown_facts"] == blockers["unknown_facts"]


# --- live re-evaluation --------------------------------------------------------------------


def _after(bed: Bed, case: str, since: float, timeout_s: float) -> tuple[Payload, Payload]:
    """The first tracking and blockers produced for ``case`` after ``since`` (by their
    ``ts``: a daemon re-publishes retained state after reconnecting to the broker)."""
    def fresh(messages: list[Received]) -> tuple[Payload, Payload] | None:
        got = {t: next((m.json for m in messages if m.topic == vm_topic(case, t)
                        and m.json["ts"] >= since), None) for t in ("tracking", "blockers")}
        return (got["tracking"], got["blockers"]) if all(got.values()) else None  # type: ignore[return-value]
    found: tuple[Payload, Payload] = bed.recorder.wait_for(fresh, timeout_s, f"{case} again")
    return found


def test_hot_unplug_is_reevaluated_at_once(bed: Bed) -> None:
    """DEVICE_DELETED (QEMU's real event) makes the daemon evaluate again at once, long
    before its 60 s refresh; QEMU drops the device's blocker (migration.c:1133-1140)."""
    before, after = golden_v10.UNPLUG_BEFORE, golden_v10.UNPLUG_AFTER
    check_blockers(before, bed.last(before.name, "blockers"))
    since = time.time()
    bed.standin.set_scenario(bed.endpoints[before.name], after.presented,
                             golden_v10.DEVICE_DELETED)
    tracking, blockers = _after(bed, before.name, since, 5.0)
    check_tracking(after, tracking)
    check_blockers(after, blockers)
    check_agreement(after, blockers)
    assert ranges_of(tracking) == expected_ranges(after)


# QEMU has no DEVICE_ADDED event (qapi/qdev.json of 10.0.2 and 10.2.2 define only
# DEVICE_DELETED and DEVICE_UNPLUG_GUEST_ERROR): the daemon compares the device lists
# every [vfio] hotplug_poll_s instead (1 s here).
def test_hot_plug_is_reevaluated_within_seconds(bed: Bed) -> None:
    before, after = golden_v10.HOTPLUG_BEFORE, golden_v10.HOTPLUG_AFTER
    check_tracking(before, bed.last(before.name, "tracking"))
    since = time.time()
    bed.standin.set_scenario(bed.endpoints[before.name], after.presented)  # as QEMU: no event
    tracking, blockers = _after(bed, before.name, since, 4.0)
    check_tracking(after, tracking)
    check_blockers(after, blockers)


async def _over_socket(path: Path) -> VmTopology:
    session = await QmpSession.open(
        QmpAddress(kind="unix", path=path), policy=READ_ONLY, command_timeout_s=10.0,
        connect_timeout_s=10.0, event_queue_size=10, label=str(path))
    try:
        return await gather_topology(session)
    finally:
        await session.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_standin_drives_the_query_without_a_socket(bed: Bed, case: Golden) -> None:
    """The sans-I/O ``TopologyQuery`` gives the same ``VmTopology`` answered in-process
    by the stand-in as over a QMP socket through ``qmp.gather`` (the daemon's path)."""
    endpoint = bed.endpoints[case.name]
    direct = bed.standin.call(bed.standin.standin.topology(endpoint))
    assert direct == bed.standin.call(_over_socket(endpoint.path))
    presented = case.presented
    assert sorted(d.qom_path for d in direct.devices) == sorted(d.path for d in presented.devices)
    assert direct.blocked_reasons == presented.blocked_reasons


def test_docs_table_is_current() -> None:
    assert golden.markdown(CASES) in DOCS.read_text(encoding="utf-8"), (
        "docs/golden-cases.md is stale: paste tests.support.golden.markdown(all_cases())")
