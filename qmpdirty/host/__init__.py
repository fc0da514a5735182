"""Host facts for the VFIO engine: bound drivers, debugfs VFIO migration features,
IOMMU dirty-tracking capability (reference §5).

Stage: shell package. ``sysfs.read_host`` reads files under the configured roots and
hands raw text to ``interpret`` (pure), which builds ``facts.topology.HostFacts``.
Nothing here writes to the host or opens a device.
"""

from qmpdirty.host.sysfs import read_host

__all__ = ["read_host"]
