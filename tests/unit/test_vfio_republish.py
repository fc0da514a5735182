"""When ``tracking`` and ``blockers`` go out again: on a change of what they say."""

from __future__ import annotations

import dataclasses

from qmpdirty.decisions.vfio.evaluate import evaluate
from qmpdirty.decisions.vfio.republish import Republish, republish, shown
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VfioDevice, VmTopology
from qmpdirty.facts.vm import VmBasics

BASE = VmTopology(VmBasics((10, 0, 2), "pc-q35-10.0", 2**30))
DEVICE = VfioDevice(qom_path="/machine/peripheral/h0", qom_type="vfio-pci", id="h0",
                    host="0000:3b:00.1", sysfsdev=None, enable_migration="auto")
VRB = "vvfat (0x123) does not support live migration"


def test_first_evaluation_is_published_without_hooks() -> None:
    assert republish(None, shown(evaluate(BASE, HostFacts()))) == Republish(publish=True)


def test_the_same_verdict_again_is_not_published() -> None:
    first, again = (shown(evaluate(BASE, HostFacts())) for _ in range(2))
    assert first is not again
    assert republish(first, again) == Republish(publish=False)


def test_a_new_blocker_republishes_both_and_fires_blockers_changed_only() -> None:
    before = shown(evaluate(BASE, HostFacts()))
    after = shown(evaluate(dataclasses.replace(BASE, blocked_reasons=(VRB,)), HostFacts()))
    assert republish(before, after) == Republish(publish=True, blockers_changed=True)


def test_a_device_gone_changes_tracking() -> None:
    with_device = shown(evaluate(dataclasses.replace(BASE, devices=(DEVICE,)), HostFacts()))
    without = shown(evaluate(BASE, HostFacts()))
    decision = republish(with_device, without)
    assert decision.publish and decision.tracking_changed
    assert with_device.tracking.devices and not without.tracking.devices


def test_another_qemu_version_changes_tracking_only() -> None:
    before = shown(evaluate(BASE, HostFacts()))
    newer = dataclasses.replace(BASE, basics=VmBasics((10, 1, 0), "pc-q35-10.0", 2**30))
    after = shown(evaluate(newer, HostFacts()))
    assert republish(before, after) == Republish(publish=True, tracking_changed=True)
