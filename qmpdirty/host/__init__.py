"""Host files for the VFIO engine: bound drivers, debugfs VFIO migration features,
IOMMU registers, the kernel's scalable-mode settings (reference §5); a QEMU's residency.

Stage: shell package. ``sysfs`` reads files under the configured roots and returns what
it read, uninterpreted; ``decisions.vfio.host_caps`` (pure) makes ``facts.host.HostFacts``
of it, wired in ``daemon/vfio_verdict.py``. ``residency`` reads a QEMU's memory map and
``pagemap`` entries, uninterpreted as well (``decisions.migration.residency`` judges
them, wired in ``daemon/residency.py``). Nothing here writes to the host or opens a device.
"""
