"""Whether a VFIO device could be hot-plugged into a VM now (pure core).

Stage: decisions. QEMU emits no DEVICE_ADDED event (``facts.qemu``:
``LAST_WITHOUT_DEVICE_ADDED``, checked on QEMU 10.0.2: ``device_add`` of a PCI device
into a q35 root port or a pc machine's bus emits no event at all), so the daemon
notices a hot-plug by listing each VM's device containers. That listing is only worth
its two commands when a VFIO device could come: one served through the host's VFIO
needs a host device bound to a VFIO driver or a mediated device first (libvirt binds
a managed ``hostdev`` just before ``device_add``), one served by ``vfio-user-pci``
(QEMU >= ``VFIO_USER_PCI``) needs nothing on the host. No I/O: the shell reads the
host (``host.sysfs.read_vfio_devices``) and polls.
"""

from __future__ import annotations

from qmpdirty.facts.qemu import VFIO_USER_PCI, QemuVersion, since


def may_hot_plug(host_devices: frozenset[str] | None, version: QemuVersion) -> bool:
    """Whether a VFIO device could be hot-plugged into a VM of QEMU ``version`` on a
    host that offers ``host_devices`` (None: not known, so yes)."""
    return host_devices is None or bool(host_devices) or since(version, VFIO_USER_PCI)
