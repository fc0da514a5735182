"""``qmpdirty probe``'s report: the payloads the daemon publishes, as text and JSON."""

from __future__ import annotations

import json

from qmpdirty.cli.probe import build_report, human, report_json
from qmpdirty.decisions.vfio.evaluate import evaluate
from qmpdirty.demo.lab.vfio_cases import dev, host_dev, hosts, topo
from qmpdirty.telemetry import render
from qmpdirty.telemetry.message import VmStamp
from qmpdirty.telemetry.render import vfio
from qmpdirty.telemetry.topics import Topics
from tests.unit.test_render import INFO, RUNNING

TOPICS = Topics.create("qmpdirty", "kvm01")
PLAIN = evaluate(topo("10.0", dev(0), blocked=(
    "0000:3b:00.0: VFIO migration is not supported in kernel",)), hosts(host_dev(0, "vfio-pci")))


def test_json_members_are_the_published_payloads() -> None:
    report = build_report(TOPICS, "web1", 5.0, info=INFO, qmp="unix:/q", view=PLAIN,
                          migration_status=None)
    printed = json.loads(report_json(report))
    assert list(printed) == ["info", "tracking", "blockers", "migration_status"]
    assert printed["info"] == json.loads(
        render.info(VmStamp(TOPICS, "web1", 1, 5.0), INFO, RUNNING, "unix:/q", None).payload)
    assert printed["tracking"] == json.loads(
        vfio.tracking(VmStamp(TOPICS, "web1", 2, 5.0), PLAIN).payload)
    assert printed["blockers"] == json.loads(
        vfio.blockers(VmStamp(TOPICS, "web1", 3, 5.0), PLAIN).payload)
    assert printed["migration_status"] is None


def test_text() -> None:
    report = build_report(TOPICS, "web1", 5.0, info=INFO, qmp="unix:/q", view=PLAIN,
                          migration_status="completed")
    lines = human(report).splitlines()
    assert lines[:4] == [
        "VM web1  QEMU 10.0.2  machine pc-i440fx-10.0  accel tcg",
        "  1 vCPUs, 128 MiB RAM, run state running, migration events on",
        "  migration: completed",
        "  migratable: no",
    ]
    assert lines[4:7] == [
        "    blocked: 0000:3b:00.0: VFIO migration is not supported in kernel",
        "  prediction agrees with QEMU",
        "    predicted: 0000:3b:00.0: VFIO migration is not supported in kernel",
    ]
    assert lines[-2:] == [
        "  VFIO 0000:3b:00.0 (vfio-pci, vfio-pci): blocked - QEMU refuses to migrate with "
        "this device",
        "  container legacy:memory: all-dirty; ranges none; fits None",
    ]
