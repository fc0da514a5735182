"""Hot-plug and unplug of simulated VFIO devices over QMP (lab: the VFIO stand-in's part).

A ``Plug`` is a VFIO device the stand-in lets a client ``device_add``: the device as
QEMU would show it once realized, the ``device_add`` arguments that ask for it, and the
``blocked-reasons`` QEMU registers when it realizes that device. Those texts are
**hand-written** by whoever offers the plug (from QEMU's source), never computed by
qmpdirty, exactly like a ``Scenario``'s.

What QEMU 10.0.2 does, and so what the stand-in plays:

* ``device_add`` (system/qdev-monitor.c ``qmp_device_add``) realizes the device at once
  and returns ``{}``; ``vfio_migration_realize`` (hw/vfio/migration.c) adds the device's
  blockers then. QEMU has no DEVICE_ADDED event (qapi/qdev.json): clients notice the
  new device by looking. A q35 root bus takes no hot-plugged device ("Bus 'pcie.0'
  does not support hotplugging"), so a plug names a root port's bus.
* ``device_del`` (``qmp_device_del``) returns ``{}`` and asks the guest to eject the
  device; once it has, the device is unrealized (``vfio_migration_exit`` ->
  ``migrate_del_blocker``: its blockers go) and DEVICE_DELETED ``{device, path}`` is
  sent. The guest knows nothing of a simulated device, so the stand-in ejects it itself
  after ``EJECT_DELAY_S``.

Requests that match no plug go to the real QEMU, whose own reply (an error for a host
device that does not exist) is the faithful one. This module holds the pure part: which
plug a request names, the scenario with or without it, and the ``query-pci`` entries of
devices behind a numbered bridge. It must not talk to QEMU (the stand-in does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from qmpdirty.demo.lab.vfio_scenario import PCIE0, PERIPHERAL, FabDevice, Scenario, pci_entries

#: Seconds between ``device_del`` and DEVICE_DELETED (a guest that ejects at once).
EJECT_DELAY_S = 0.1


@dataclass(frozen=True)
class Plug:
    """A device ``device_add`` may plug: ``device`` as QEMU shows it once realized (its
    ``bus`` is the QOM path of the bus named ``bus_name``), and the ``blocked_reasons``
    QEMU registers for it while it is there."""

    device: FabDevice
    bus_name: str
    blocked_reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.device.id is not None, "device_add of a plug names its id"
        assert self.device.hotplugged, "a plugged device reports hotplugged=true"
        assert self.device.bus == bridge_bus(self.bus_name), \
            f"{self.device.path}: bus {self.device.bus} is not {self.bus_name}'s"

    def requested_by(self, arguments: Mapping[str, Any]) -> bool:
        """``device_add`` with these arguments asks for this device."""
        d = self.device
        return (arguments.get("driver") == d.qom_type and arguments.get("id") == d.id
                and arguments.get("host") == d.host and arguments.get("bus") == self.bus_name)


def bridge_bus(ident: str) -> str:
    """The QOM path of the secondary bus of the bridge ``-device ...,id=ident`` (the bus
    takes the bridge's id as its name)."""
    return f"{PERIPHERAL}/{ident}/{ident}"


def plugged_in(scenario: Scenario, plugs: Sequence[Plug]) -> list[Plug]:
    """The plugs whose device the scenario has now."""
    return [p for p in plugs if scenario.find(p.device.path) is not None]


def with_plug(scenario: Scenario, plug: Plug) -> Scenario:
    """The VM after ``device_add`` realized the plug's device."""
    return replace(scenario, devices=(*scenario.devices, plug.device),
                   blocked_reasons=(*scenario.blocked_reasons, *plug.blocked_reasons))


def without_plug(scenario: Scenario, plug: Plug) -> Scenario:
    """The VM after the guest ejected the plug's device (its blockers go with it)."""
    reasons = list(scenario.blocked_reasons)
    for text in plug.blocked_reasons:
        reasons.remove(text)
    return replace(scenario, devices=tuple(d for d in scenario.devices if d != plug.device),
                   blocked_reasons=tuple(reasons))


def deleted_event(plug: Plug) -> tuple[str, dict[str, Any]]:
    """QEMU's DEVICE_DELETED for the plug's device (qapi/qdev.json)."""
    return "DEVICE_DELETED", {"device": plug.device.id, "path": plug.device.path}


def with_fabricated(devices: list[dict[str, Any]], scenario: Scenario, bus: str = PCIE0,
                    number: int = 0) -> list[dict[str, Any]]:
    """``query-pci`` ``devices`` of ``bus`` (numbered ``number``) with the scenario's
    devices on it added, and on the buses of its bridges that firmware has numbered
    (hw/pci/pci-qmp-cmds.c ``qmp_query_pci_bridge`` lists a bridge's ``devices`` only
    when its secondary bus number is set)."""
    for d in devices:
        bridge = d.get("pci_bridge")
        if bridge is not None and "devices" in bridge and d.get("qdev_id"):
            bridge["devices"] = with_fabricated(bridge["devices"], scenario,
                                                bridge_bus(d["qdev_id"]),
                                                bridge["bus"]["secondary"])
    extra = pci_entries(scenario, bus, number)
    if not extra:
        return devices
    return sorted([*devices, *extra], key=lambda d: (d["slot"], d["function"]))
