"""One VM's pipeline with a VFIO device, without QEMU or VFIO hardware.

The scripted QEMU 10.0.2 (``pipeline_harness``) gains a ``vfio-pci`` as QEMU 10.0.2
shows one (the lab's ``vfio_scenario``: its QOM properties and their values), and the
daemon reads its host facts from a fake host tree (the lab's ``fakehost``) through
``[host]``'s roots. What only real QEMU reached before: ``tracking`` naming the device
with its mode, and a re-evaluation after the device went that republishes ``tracking``
and ``blockers`` and fires ``tracking-changed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab import vfio_scenario as fab
from qmpdirty.demo.lab.fakehost import ALL_FEATURES, FakeDevice, FakeHost, build
from tests.adapters.pipeline_harness import VM, ScriptedVm, config, online, running
from tests.adapters.scripted_qmp import QmpError

VERSION = (10, 0, 2)
HOST_BRIDGE = "/machine/i440fx"  # the scripted QEMU's machine is a pc-i440fx
BUS = f"{HOST_BRIDGE}/pci.0"
HOSTDEV = fab.FabDevice(id="hostdev0", host="0000:3b:00.1", devfn=0x18, bus=BUS)


@dataclass
class VfioVm(ScriptedVm):
    """The scripted QEMU with ``devices`` plugged (a test may take one away)."""

    devices: list[fab.FabDevice] = field(default_factory=lambda: [HOSTDEV])

    def handlers(self) -> dict[str, Any]:
        handlers = super().handlers()
        listing = handlers["qom-list"]
        handlers["qom-list"] = lambda a: [*listing(a), *self._children(a["path"])]
        handlers["qom-get"] = self._qom_get_vfio
        handlers["query-pci"] = lambda _a: [{"bus": 0, "devices": fab.pci_entries(
            self._scenario(), BUS), "pci_bridge": None}]
        handlers["query-memory-devices"] = lambda _a: []
        return handlers

    def _scenario(self) -> fab.Scenario:
        return fab.Scenario(VERSION, tuple(self.devices))

    def _children(self, container: str) -> list[dict[str, str]]:
        return fab.children(self._scenario(), container)

    def _qom_get_vfio(self, arguments: dict[str, Any]) -> object:
        path, name = arguments["path"], arguments["property"]
        device = next((d for d in self.devices if d.path == path), None)
        if device is not None:
            values = {p.name: v for p, v in fab.properties(device, VERSION)}
            return values[name] if name in values else _absent("vfio-pci", name)
        if path == HOST_BRIDGE:  # the bus walk ends at the host bridge: it has bypass-iommu
            values = {"bypass-iommu": False, "parent_bus": "/machine/unattached/sysbus"}
            return values[name] if name in values else _absent("i440FX-pcihost", name)
        return ScriptedVm._qom_get(arguments)


def _absent(qom_type: str, name: str) -> QmpError:
    return QmpError("GenericError", f"Property '{qom_type}.{name}' not found")


async def test_tracking_names_the_device_and_a_removal_republishes_both(
        tmp_path: Path) -> None:
    tree = build(tmp_path, FakeHost(
        devices=(FakeDevice("0000:3b:00.1", "mlx5_vfio_pci", migration=ALL_FEATURES),),
        cmdline="ro intel_iommu=on,sm_on"))
    roots = {"sysfs_root": str(tree.sysfs), "proc_root": str(tree.proc),
             "debugfs_root": str(tree.debugfs), "boot_root": str(tree.boot)}
    vm = VfioVm(migrate={})
    async with running(config(vfio={"enabled": True}, host=roots), vm) as r:
        await online(r)
        await r.out.wait_for(lambda: r.out.on(f"{VM}/blockers"), "blockers")
        vm.devices = []
        await r.server.emit("DEVICE_DELETED", {"device": "hostdev0", "path": HOSTDEV.path})
        await r.out.wait_for(lambda: len(r.out.on(f"{VM}/tracking")) == 2, "tracking again")
        await r.hang_up()
    tracking, blockers = r.out.json(f"{VM}/tracking"), r.out.json(f"{VM}/blockers")
    device = tracking[0]["devices"][0]
    assert (device["qom_path"], device["host_bdf"], device["driver"], device["mode"]) == (
        HOSTDEV.path, "0000:3b:00.1", "mlx5_vfio_pci", "device")  # the driver: the host tree's
    assert [(c["mode"], c["devices"]) for c in tracking[0]["containers"]] == [
        ("device", [HOSTDEV.path])]
    # the device went (DEVICE_DELETED, not the 30 s refresh): both payloads again
    assert (tracking[1]["devices"], tracking[1]["containers"]) == ([], [])
    assert len(blockers) == 2
    assert [b["seq"] - t["seq"] for t, b in zip(tracking, blockers, strict=True)] == [1, 1]
    assert r.hooks.of("tracking-changed") == tracking[1:]  # not for the session's first
