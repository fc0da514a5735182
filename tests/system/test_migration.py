"""Live migration between two real QEMUs, watched by the real daemon over MQTT."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import (
    QmpControl,
    migrate,
    migrate_incoming,
    set_max_bandwidth,
    wait_for_migration,
)
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm, free_port
from qmpdirty.demo.lab.recorder import Received, Recorder

MIB = 1024 * 1024


@dataclass
class Pair:
    src: QemuVm
    dst: QemuVm
    src_ctl: QmpControl
    dst_ctl: QmpControl
    uri: str


@pytest.fixture
def pair(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> Iterator[Pair]:
    """Source ``src`` (dirtying 16 MiB/s) and destination ``dst`` (-incoming defer), both
    watched by a running daemon that has turned migration events on for each."""
    s_d, s_c, d_d, d_c = (sock(tmp_path, n) for n in ("src", "srcctl", "dst", "dstctl"))
    src = lab_vm(QemuSpec(name="src", qmp_servers=(s_d, s_c), rate_mib=16))
    dst = lab_vm(QemuSpec(name="dst", qmp_servers=(d_d, d_c), incoming="defer"))
    src.wait_qmp()
    dst.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{s_d}"}, {"qmp": f"unix:{d_d}"}],
                        migration={"poll_interval_s": 0.5, "poll_interval_fast_s": 0.1})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        for name in ("src", "dst"):
            recorder.wait_for(_events_on(name), 20, f"{name} info with migration events on")
        src.wait_ready()
        with QmpControl(s_c) as src_ctl, QmpControl(d_c) as dst_ctl:
            uri = f"tcp:127.0.0.1:{free_port()}"
            migrate_incoming(dst_ctl, uri)
            yield Pair(src, dst, src_ctl, dst_ctl, uri)
    finally:
        code, _ = daemon.stop()
        daemon.close()
    assert code == 0, daemon.log()


def _events_on(vm: str) -> Callable[[list[Received]], bool]:
    def check(msgs: list[Received]) -> bool:
        return any(m.topic == vm_topic(vm, "info") and m.json["migration_events"] for m in msgs)
    return check


def _statuses(msgs: list[Received], vm: str) -> list[str]:
    return [m.json["data"]["status"] for m in msgs if m.topic == vm_topic(vm, "event/MIGRATION")]


def test_full_migration_statuses_passes_and_summary(pair: Pair, recorder: Recorder) -> None:
    set_max_bandwidth(pair.src_ctl, 64 * MIB)
    migrate(pair.src_ctl, pair.uri)
    final = wait_for_migration(pair.src_ctl, 60)
    assert final["status"] == "completed"

    summary = recorder.wait_for(lambda ms: [m.json for m in ms
                                            if m.topic == vm_topic("src", "migration/summary")], 10)
    s = summary[-1]
    assert s["outcome"] == "completed" and s["role"] == "source"
    assert s["statuses"][0] == "setup" and s["statuses"][-1] == "completed"
    assert s["passes"] >= 2 and s["transferred_bytes"] > 32 * MIB
    assert s["total_time_ms"] == final["total-time"]
    assert s["downtime_ms"] == final["downtime"]

    # Every MIGRATION status QEMU emitted, in order, as the test's own monitor saw them.
    seen_by_test = [e["data"]["status"] for e in pair.src_ctl.events()
                    if e["event"] == "MIGRATION"]
    msgs = recorder.snapshot()
    assert _statuses(msgs, "src") == seen_by_test
    assert seen_by_test[:2] == ["setup", "active"] and seen_by_test[-2:] == ["device", "completed"]

    passes = [m.json for m in msgs if m.topic == vm_topic("src", "migration/pass")]
    assert [p["pass"] for p in passes] == list(range(1, len(passes) + 1))
    assert all(p["id"] == s["id"] for p in passes) and len(passes) == s["passes"]
    assert all(not m.retain for m in msgs if m.topic.endswith("migration/pass"))

    progress = [m.json for m in msgs if m.topic == vm_topic("src", "migration")]
    assert progress[-1]["status"] == "completed" and progress[-1]["id"] == s["id"]
    assert any(p["transferred_bytes"] for p in progress if p["status"] == "active")
    seqs = [m.json["seq"] for m in msgs if m.topic.startswith(vm_topic("src", ""))
            and m.payload.startswith(b"{")]
    assert seqs == sorted(seqs), "seq must increase per VM"

    dst = recorder.wait_for(lambda ms: [m.json for m in ms
                                        if m.topic == vm_topic("dst", "migration/summary")], 10)
    assert dst[-1]["outcome"] == "completed" and dst[-1]["role"] == "destination"
    assert _statuses(recorder.snapshot(), "dst")[-1] == "completed"


def test_cancelled_migration(pair: Pair, recorder: Recorder) -> None:
    set_max_bandwidth(pair.src_ctl, 1 * MIB)  # far below the 16 MiB/s dirty rate
    migrate(pair.src_ctl, pair.uri)
    recorder.wait_for(lambda ms: "active" in _statuses(ms, "src"), 20, "MIGRATION active")
    pair.src_ctl.cmd("migrate_cancel")
    final = wait_for_migration(pair.src_ctl, 30)
    assert final["status"] == "cancelled"
    summary = recorder.wait_for(lambda ms: [m.json for m in ms
                                            if m.topic == vm_topic("src", "migration/summary")], 10)
    assert summary[-1]["outcome"] == "cancelled"
    assert summary[-1]["statuses"][-2:] == ["cancelling", "cancelled"]


def test_source_killed_mid_migration_is_lost(pair: Pair, recorder: Recorder) -> None:
    set_max_bandwidth(pair.src_ctl, 1 * MIB)
    migrate(pair.src_ctl, pair.uri)
    recorder.wait_for(lambda ms: "active" in _statuses(ms, "src"), 20, "MIGRATION active")
    killed_at = time.time()
    pair.src.kill()
    lost = recorder.wait_for(lambda ms: [m for m in ms
                                         if m.topic == vm_topic("src", "migration/summary")], 5)
    assert lost[-1].json["outcome"] == "lost" and lost[-1].at - killed_at <= 2.0
    assert lost[-1].json["statuses"][:2] == ["setup", "active"]
    offline = recorder.wait_text(vm_topic("src", "status"), "offline", 5, after=killed_at)
    assert offline.at - killed_at <= 2.0
