"""One VM's Home Assistant discovery, sent when its session starts (shell).

What the messages say is ``telemetry.discovery``'s; this module only decides, from the
VM's record, whether this session must send them again. Must not build a payload.
"""

from __future__ import annotations

from qmpdirty.daemon.view import VmView
from qmpdirty.telemetry.discovery import VmDevice, discovery_messages
from qmpdirty.telemetry.topics import Topics


def announce(view: VmView, topics: Topics) -> None:
    """Home Assistant discovery, once per VM per daemon run (retained), and again
    when a new session finds another QEMU version or machine (its device shows them);
    the dirty rate expires when the broker drops it (``dirty_rate_expiry``)."""
    vm = view.vm
    known = (view.info.basics.version_text, view.info.basics.machine) \
        if view.info is not None else None
    ha = view.cfg.homeassistant
    if not ha.enabled or (vm.discovery_sent and known in (None, vm.discovery_device)):
        return
    version, machine = known or (None, None)
    device = VmDevice(version, machine, view.dirty_rate_expiry())
    for msg in discovery_messages(topics, vm.name, ha.discovery_prefix, device):
        view.out.publish(msg)
    vm.discovery_sent = True
    vm.discovery_device = known or vm.discovery_device
