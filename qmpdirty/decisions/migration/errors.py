"""QEMU's migration ``error-desc`` parsed into a cause (pure core).

Stage: decisions. The texts are QEMU's (hw/vfio/listener.c, container.c,
container-legacy.c, backends/iommufd.c in 10.2.2; ``error_setg_errno`` appends
``": <strerror>"``). A text that matches nothing gives no cause, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmpdirty.decisions.migration.tracker import Migration

#: strerror(3) text -> errno name, for the errors these paths return.
ERRNO_NAMES = {
    "Operation not supported": "EOPNOTSUPP", "Invalid argument": "EINVAL",
    "Argument list too long": "E2BIG", "Value too large for defined data type": "EOVERFLOW",
    "Cannot allocate memory": "ENOMEM", "No such device": "ENODEV",
    "Inappropriate ioctl for device": "ENOTTY", "Device or resource busy": "EBUSY",
    "Bad address": "EFAULT", "Input/output error": "EIO", "Connection refused": "ECONNREFUSED",
    "Broken pipe": "EPIPE", "Connection reset by peer": "ECONNRESET",
}


@dataclass(frozen=True, slots=True)
class ErrorCause:
    kind: str
    device: str | None
    errno: str | None
    detail: str


_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((k, re.compile(p)) for k, p in (
    ("vfio-dma-logging-start",
     r"(?:vfio: Could not start dirty page tracking - )?(?P<device>\S+): "
     r"Failed to start DMA logging(?:: (?P<err>.+))?"),
    ("vfio-type1-dirty-tracking",
     r".*Failed to set dirty tracking flag 0x[0-9a-f]+(?:: (?P<err>.+))?"),
    ("iommufd-dirty-tracking",
     r".*IOMMU_HWPT_SET_DIRTY_TRACKING\(hwpt_id \d+\) failed(?:: (?P<err>.+))?"),
    ("vfio-dma-logging-report",
     r".*?(?P<device>\S+): Failed to get DMA logging report, iova: .*?(?:: (?P<err>[A-Z][^:]+))?"),
    ("vfio-dirty-bitmap", r".*Failed to get dirty bitmap for iova: .*?(?:: (?P<err>[A-Z][^:]+))?"),
    ("iommufd-dirty-bitmap",
     r".*IOMMU_HWPT_GET_DIRTY_BITMAP \(iova: .*?(?:: (?P<err>[A-Z][^:]+))?"),
    ("vfio-unmap-bitmap", r".*UNMAP: Size of bitmap too big.*"),
    ("vfio-postcopy", r"(?P<device>\S+): VFIO migration is not supported with postcopy migration"),
    ("network", r".*(?P<err>Connection refused|Broken pipe|Connection reset by peer).*"),
))


def error_cause(error_desc: str | None) -> ErrorCause | None:
    """The cause behind QEMU's ``error-desc``, when the text is one qmpdirty knows."""
    if not error_desc:
        return None
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(error_desc.strip())
        if m is None:
            continue
        groups = m.groupdict()
        err = groups.get("err")
        return ErrorCause(kind, groups.get("device"), ERRNO_NAMES.get(err or ""),
                          error_desc.strip())
    return None


def cause_of(m: Migration) -> ErrorCause | None:
    """The cause of an ended migration's failure, from QEMU's last ``error-desc``."""
    return error_cause(m.snapshot.error_desc if m.snapshot else None)
