"""QEMU's migration-blocker texts for VFIO, by version, with cause and remedy (pure core).

Stage: decisions. The texts are QEMU's exact wording so that a prediction can be
compared with ``query-migrate`` ``blocked-reasons`` string for string. Sources:
hw/vfio/migration.c ``vfio_migration_realize`` and hw/vfio/common.c
``vfio_block_multiple_devices_migration`` in QEMU 10.0.2 and 10.2.2 (read);
8.0-9.1 wording from the patch mails quoted in reference §3.1; 11.0 from the
pull-vfio-20260113 mails. ``%s`` is the device's ``vbasedev->name`` (host BDF).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from qmpdirty.decisions.vfio.basis import Evidence
from qmpdirty.errors import InternalError
from qmpdirty.facts.qemu import (
    ENABLE_MIGRATION,
    IOMMUFD_DIRTY,
    P2P_MULTI_DEVICE,
    QemuVersion,
    since,
)


class BlockerKind(Enum):
    """Every blocker qmpdirty models; the value names it in payloads (``cause``)."""

    DISABLED = "migration-disabled"
    NO_KERNEL_SUPPORT = "no-migration-driver"
    INIT_FAILED = "migration-init-failed"
    NO_DIRTY_TRACKING = "no-dirty-tracking"
    MULTIPLE_DEVICES = "multiple-devices-without-p2p"
    VIOMMU = "viommu"
    LARGE_MEMORY = "large-memory"
    LEGACY_UNSUPPORTED = "pre-8.1-no-migration"
    NON_MIGRATABLE = "non-migratable-device"


@dataclass(frozen=True, slots=True)
class Blocker:
    """One predicted blocker: QEMU's text, the device (None = global), cause, remedy."""

    text: str
    kind: BlockerKind
    device: str | None
    remedy: str
    rule: str  # the QEMU function / condition that raises it
    trigger: str | None = None  # global blockers: the device whose realize added it
    evidence: tuple[Evidence, ...] = ()  # the facts the prediction rests on (``basis``)


REMEDIES: dict[BlockerKind, str] = {
    BlockerKind.DISABLED: "remove enable-migration=off from the device (auto is the default)",
    BlockerKind.NO_KERNEL_SUPPORT: (
        "bind the device to a VFIO variant driver with migration support (for example "
        "mlx5_vfio_pci), or hot-unplug it before migrating"),
    BlockerKind.INIT_FAILED: (
        "the driver's migration support lacks STOP_COPY or failed to initialise: check the "
        "variant driver and firmware, or hot-unplug the device before migrating"),
    BlockerKind.NO_DIRTY_TRACKING: (
        "use a device whose driver does DMA logging (debugfs features list dirty-tracking), "
        "or the iommufd backend on a host IOMMU with dirty tracking (Intel SSADS in "
        "scalable mode, AMD HDSup); enable-migration=on accepts type1 'all dirty' instead"),
    BlockerKind.MULTIPLE_DEVICES: (
        "give the VM only devices whose drivers support P2P migration (debugfs features "
        "list p2p), or hot-unplug all but one VFIO device before migrating"),
    BlockerKind.VIOMMU: (
        "remove the vIOMMU, or put the device behind a host bridge that bypasses it "
        "(pxb bypass_iommu=true, machine default-bus-bypass-iommu=on); QEMU 11.0 allows "
        "vIOMMU when the device is tracked by the IOMMU rather than DMA logging"),
    BlockerKind.LARGE_MEMORY: (
        "the type1 dirty bitmap cannot cover this much guest RAM: use the iommufd backend "
        "or a device with DMA logging"),
    BlockerKind.LEGACY_UNSUPPORTED: (
        "QEMU 8.0 migrates VFIO only with x-enable-migration=on and a v2 migration driver; "
        "upgrade QEMU or hot-unplug the device before migrating"),
    BlockerKind.NON_MIGRATABLE: "hot-unplug the device before migrating (it is never migratable)",
}


def per_device(version: QemuVersion, kind: BlockerKind, name: str, detail: str = "") -> str:
    """The text of a per-device blocker for ``version`` (``%s`` = ``name``)."""
    prefix = f"{name}: " if since(version, ENABLE_MIGRATION) else ""
    if kind is BlockerKind.DISABLED:
        return f"{name}: Migration is disabled for VFIO device"
    if kind is BlockerKind.NO_KERNEL_SUPPORT:
        return f"{name}: VFIO migration is not supported in kernel"
    if kind is BlockerKind.INIT_FAILED:
        return f"{name}: Migration couldn't be initialized for VFIO device, err: {detail}"
    if kind is BlockerKind.NO_DIRTY_TRACKING:
        what = "device and IOMMU dirty tracking" if since(version, IOMMUFD_DIRTY) \
            else "device dirty tracking"
        return f"{name}: VFIO device doesn't support {what}"
    if kind is BlockerKind.VIOMMU:
        return f"{prefix}Migration is currently not supported with vIOMMU enabled"
    if kind is BlockerKind.LARGE_MEMORY:
        return (f"{name}: Migration is currently not supported with large memory VM due to "
                "dirty tracking limitation in backend")
    if kind is BlockerKind.LEGACY_UNSUPPORTED:
        return "VFIO device doesn't support migration"
    raise InternalError(f"{kind} is not a per-device blocker")


def multiple_devices(version: QemuVersion) -> str:
    """The global blocker for several migratable devices (wording changed in 8.2)."""
    if since(version, P2P_MULTI_DEVICE):
        return ("Multiple VFIO devices migration is supported only if all of them support "
                "P2P migration")
    return "Migration is currently not supported with multiple VFIO devices"


def global_viommu() -> str:
    """QEMU 8.0's one global vIOMMU blocker (per device from 8.1)."""
    return "Migration is currently not supported with vIOMMU enabled"


def non_migratable(idstr: str) -> str:
    """``qemu_savevm_non_migratable_list``: vmsd ``unmigratable`` (vfio-ap, vfio-ccw)."""
    return f"non-migratable device: {idstr}"


def blocker(version: QemuVersion, kind: BlockerKind, device: str | None, name: str, *, rule: str,
            detail: str = "", evidence: tuple[Evidence, ...] = ()) -> Blocker:
    """A per-device ``Blocker`` value with its text and remedy."""
    text = per_device(version, kind, name, detail)
    return Blocker(text, kind, device, REMEDIES[kind], rule, evidence=evidence)
