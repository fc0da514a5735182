"""``qmpdirty probe``'s report: the payloads the daemon publishes, as text and JSON."""

from __future__ import annotations

import json

from qmpdirty.cli.probe import build_report, human, report_json
from qmpdirty.decisions.vfio.evaluate import VfioVerdict, evaluate
from qmpdirty.demo.lab.vfio_cases import dev, host_dev, hosts, topo
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology
from qmpdirty.telemetry import render
from qmpdirty.telemetry.message import VmStamp
from qmpdirty.telemetry.render import vfio
from qmpdirty.telemetry.topics import Topics
from tests.support.render_inputs import INFO, RUNNING

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
        "  1 vCPU, 128 MiB RAM, run state running, migration events on",
        "  migration: completed",
        "  migratable: no",
    ]
    assert lines[4:7] == [
        "    blocked: 0000:3b:00.0: VFIO migration is not supported in kernel",
        "  prediction agrees with QEMU",
        "    predicted (host): 0000:3b:00.0: VFIO migration is not supported in kernel",
    ]
    assert lines[-2:] == [
        "  VFIO 0000:3b:00.0 (vfio-pci, vfio-pci): blocked (host) - QEMU refuses to migrate "
        "with this device",
        "  container legacy:memory: all-dirty; ranges none; fits None",
    ]


VVFAT = ("The qcow format used by node '#block311' does not support live migration",
         "The vvfat (rw) format used by node '#block080' does not support live migration")


def _text(view: VfioVerdict) -> list[str]:
    report = build_report(TOPICS, "web1", 5.0, info=INFO, qmp="unix:/q", view=view,
                          migration_status=None)
    return human(report).splitlines()


def test_nothing_predicted_is_not_called_agreement() -> None:
    """First-use review B6: a VM without VFIO devices blocked by two non-VFIO blockers."""
    lines = _text(evaluate(VmTopology(INFO.basics, blocked_reasons=VVFAT), HostFacts()))
    assert lines[3:7] == ["  migratable: no", f"    blocked: {VVFAT[0]}",
                          f"    blocked: {VVFAT[1]}",
                          "  2 blockers not modelled (nothing predicted: no VFIO device)"]
    assert not any("agrees" in line for line in lines)


def test_agreement_is_scoped_to_vfio_blockers_and_unknown_facts_are_named() -> None:
    view = evaluate(topo("10.0", dev(0), blocked=(
        "0000:3b:00.0: VFIO migration is not supported in kernel", VVFAT[0])),
        hosts(host_dev(0, "vfio-pci")))
    assert "  prediction agrees with QEMU on VFIO blockers; 1 blocker not modelled" in _text(view)
    # two fd-passed devices: QEMU's VFIO_FD<n> names neither, nothing can be inferred
    fd = "/objects/iommufd0"
    view = evaluate(topo("10.2", dev(0, host="ffff:ff:ff.f", iommufd=fd),
                         dev(1, host="ffff:ff:ff.f", iommufd=fd), blocked=(
        "VFIO_FD7: VFIO migration is not supported in kernel",)), HostFacts())
    lines = _text(view)
    assert "  prediction DISAGREES with QEMU" in lines
    assert any(line.startswith("    unknown: migration of /machine/peripheral/hostdev0: "
                               "assumes migration driver (mig_ops)=yes") for line in lines)
