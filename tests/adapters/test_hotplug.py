"""The hot-plug poll (issue 12, item 9): a VM's device containers are listed every
``hotplug_poll_s`` only while a VFIO device could come (``decisions.vfio.hotplug``),
and a hot-plug is still noticed within a poll of the host offering one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qmpdirty.daemon.hotplug import HostVfio, watch_host_vfio
from qmpdirty.decisions.vfio.hotplug import may_hot_plug
from qmpdirty.demo.lab.fakehost import FakeDevice, FakeHost, build
from qmpdirty.host.sysfs import read_vfio_devices
from tests.adapters.pipeline_harness import VM, ScriptedVm, config, online, running


async def test_no_poll_while_no_vfio_device_can_come_then_a_hot_plug_is_noticed() -> None:
    vm = ScriptedVm(migrate={})
    cfg = config(vfio={"enabled": True, "refresh_interval_s": 30.0, "hotplug_poll_s": 0.1})
    async with running(cfg, vm) as r:
        r.ctx.host_vfio.devices = frozenset()  # a host with nothing bound to VFIO
        await online(r)
        await r.out.wait_for(lambda: r.out.on(f"{VM}/tracking"), "tracking")
        listed = len(r.sent("qom-list"))
        await asyncio.sleep(0.6)
        assert len(r.sent("qom-list")) == listed  # six polls skipped
        r.ctx.host_vfio.devices = frozenset({"pci:0000:75:00.1"})  # bound for a hot-plug
        await r.out.wait_for(lambda: len(r.sent("qom-list")) > listed, "the poll again")
        gathered = len(r.sent("query-migrate"))
        vm.peripherals.append({"name": "hostdev0", "type": "child<vfio-pci>"})
        await r.out.wait_for(lambda: len(r.sent("query-migrate")) > gathered,
                             "the hot-plug noticed", timeout_s=1.0)
        await r.hang_up()


async def test_without_vfio_a_hot_plug_that_blocks_migration_shows_within_a_poll() -> None:
    """No VFIO device can come, so the poll lists no devices: it asks QEMU's
    blocked-reasons (one ``query-migrate``), and a hot-plugged device that adds a migration
    blocker (QEMU says nothing of the device_add) reaches ``blockers.observed`` within
    ``hotplug_poll_s``, long before the 30 s refresh. The polls' answers spare the
    liveness probe."""
    vm = ScriptedVm(migrate={})
    cfg = config(vfio={"enabled": True, "refresh_interval_s": 30.0, "hotplug_poll_s": 0.1},
                 qmp={"liveness_interval_s": 0.2})
    async with running(cfg, vm) as r:
        r.ctx.host_vfio.devices = frozenset()  # a host with nothing bound to VFIO
        await online(r)
        await r.out.wait_for(lambda: r.out.on(f"{VM}/blockers"), "blockers")
        listed, asked, probed = (len(r.sent(c)) for c in ("qom-list", "query-migrate",
                                                          "query-status"))
        await asyncio.sleep(0.6)
        assert len(r.sent("qom-list")) == listed  # no device list polled
        assert len(r.sent("query-migrate")) >= asked + 3  # blocked-reasons polled instead
        assert len(r.sent("query-status")) <= probed + 1  # the answers stand for liveness
        assert r.out.json(f"{VM}/blockers")[-1]["observed"] == []
        reason = "Migration is disabled when using feature 'peer mode' in device 'ivshmem'"
        vm.peripherals.append({"name": "shm", "type": "child<ivshmem-plain>"})
        vm.migrate = {"blocked-reasons": [reason]}
        blockers = await r.out.wait_for(
            lambda: [b for b in r.out.json(f"{VM}/blockers") if b["observed"] == [reason]],
            "the new blocker", timeout_s=1.0)
        assert blockers[-1]["migratable"] is False
        await r.hang_up()


@pytest.mark.parametrize(("devices", "version", "may"), [
    (None, (10, 0, 2), True),  # the host could not be read: poll
    (frozenset(), (10, 0, 2), False),
    (frozenset({"pci:0000:75:00.1"}), (10, 0, 2), True),
    (frozenset({"mdev:0b0b0b0b-0000-4000-8000-00000000000b"}), (9, 2, 0), True),
    (frozenset(), (10, 1, 0), True),  # vfio-user-pci needs nothing on the host
])
def test_may_hot_plug(devices: frozenset[str] | None, version: tuple[int, int, int],
                      may: bool) -> None:
    assert may_hot_plug(devices, version) is may


def test_the_host_offers_what_is_bound_to_a_vfio_driver(tmp_path: Path) -> None:
    tree = build(tmp_path, FakeHost(devices=(
        FakeDevice("0000:3b:00.1", "mlx5_vfio_pci"), FakeDevice("0000:3b:00.2", "vfio-pci"),
        FakeDevice("0000:5e:00.0", "nvme"), FakeDevice("0000:5e:00.1", None),
        FakeDevice("0b0b0b0b-0000-4000-8000-00000000000b", "nvidia-vgpu"))))
    assert read_vfio_devices(tree.host_config) == frozenset({
        "pci:0000:3b:00.1", "pci:0000:3b:00.2", "mdev:0b0b0b0b-0000-4000-8000-00000000000b"})
    assert read_vfio_devices(build(tmp_path / "bare", FakeHost()).host_config) == frozenset()


async def test_the_host_is_read_again_every_poll(tmp_path: Path) -> None:
    tree = build(tmp_path, FakeHost())
    cfg = config(host={"sysfs_root": str(tree.sysfs)},
                 vfio={"enabled": True, "hotplug_poll_s": 0.05})
    state = HostVfio()
    task = asyncio.create_task(watch_host_vfio(cfg, state), name="host-vfio")
    try:
        await asyncio.sleep(0.1)
        assert state.devices == frozenset()
        build(tmp_path, FakeHost(devices=(FakeDevice("0000:3b:00.1", iommu=None),), iommus=()))
        await asyncio.sleep(0.2)
        assert state.devices == frozenset({"pci:0000:3b:00.1"})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
