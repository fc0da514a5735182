"""The Linux VFIO PCI drivers and what each sets for migration (pure core).

Stage: host interpretation (used by ``host_caps``). When debugfs cannot show a
device's ``vfio/<bdf>/migration/features`` (Linux < 6.18, ``CONFIG_VFIO_DEBUGFS``
off, debugfs not mounted: most production hosts, reference §9) and the operator
stated nothing in ``[[device_caps]]``, the bound driver says what it can: whether it
registers ``mig_ops`` (``VFIO_MIGRATION_STOP_COPY``; ``vfio_pci_core_register_device``
refuses mig_ops without it), which ``migration_flags`` it sets (``VFIO_MIGRATION_P2P``,
``VFIO_MIGRATION_PRE_COPY``) and whether it has ``log_ops`` (DMA logging: what QEMU's
``VFIO_DEVICE_FEATURE_PROBE | DMA_LOGGING_START`` tests).

Source: Linux 7.1.8 as read for reference §5.3 (unchanged in the December 2026 update,
§9). ``None`` means the driver decides per device at probe time (firmware caps, VF or
PF): such a fact stays unknown here, and QEMU's ``blocked-reasons`` may settle it
(``inference``). P2P and PRE_COPY are what the driver sets *when* it has mig_ops.
Facts from this table have basis ``driver``. Must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DriverRow:
    """One driver (``pci_driver.name``, the basename of sysfs ``driver``)."""

    name: str
    migration: bool | None  # mig_ops with STOP_COPY; None: depends on the device
    p2p: bool  # VFIO_MIGRATION_P2P, when it has mig_ops
    pre_copy: bool  # VFIO_MIGRATION_PRE_COPY, when it has mig_ops
    dma_logging: bool | None  # log_ops; None: depends on the device
    depends: str  # what a None ``migration`` depends on
    source: str  # where in Linux 7.1.8 (reference §5.3)
    kernel: str = ""  # first Linux release with migration support (reference: UNVERIFIED)
    logging_depends: str = ""  # what a None ``dma_logging`` depends on

    @property
    def sets(self) -> str:
        """What the driver sets, as a phrase for a fact's source."""
        if self.migration is False:
            return "has no mig_ops"
        flags = "|".join(f for f, on in (("STOP_COPY", True), ("P2P", self.p2p),
                                          ("PRE_COPY", self.pre_copy)) if on)
        logs = {True: " and log_ops", False: ", no log_ops", None: ", log_ops per device"}
        return f"sets {flags}{logs[self.dma_logging]}"


#: Every VFIO PCI driver of Linux 7.1.8 (plus the mtty mdev sample), reference §5.3.
DRIVERS: tuple[DriverRow, ...] = (
    # plain passthrough: vfio-pci-core without mig_ops -> QEMU blocker #2 (-ENOTTY)
    DriverRow("vfio-pci", False, False, False, False, "", "drivers/vfio/pci/vfio_pci.c"),
    DriverRow("mlx5_vfio_pci", None, True, True, None,
              "mig_ops only on a VF whose firmware has the migration, migration_multi_load "
              "and migration_tracking_state caps", "drivers/vfio/pci/mlx5/", "6.1",
              "log_ops only with the adv_virtualization firmware cap "
              "(mlx5vf_cmd_set_migratable)"),
    # a device reporting max_regions=0 fails DMA_LOGGING_START (pds_vfio_dirty_enable)
    DriverRow("pds_vfio_pci", None, True, False, True, "mig_ops only on a VF",
              "drivers/vfio/pci/pds/", "6.6"),
    # no P2P: a second migratable device raises QEMU's multiple-devices blocker
    DriverRow("hisi_acc_vfio_pci", None, False, True, False,
              "mig_ops only if probe picks the hisi-acc-vfio-pci-migration ops (else "
              "'migration support failed, continue with generic interface')",
              "drivers/vfio/pci/hisilicon/"),
    DriverRow("virtio_vfio_pci", None, True, True, False,
              "mig_ops only on a VF with virtio_pci_admin_has_dev_parts(), not in legacy-IO "
              "mode", "drivers/vfio/pci/virtio/", "6.11"),
    # pci_driver.name is the literal "qat_vfio_pci"
    DriverRow("qat_vfio_pci", True, True, True, False, "", "drivers/vfio/pci/qat/", "6.10"),
    # pci_driver.name is the literal "xe-vfio-pci" (dashes)
    DriverRow("xe-vfio-pci", None, True, False, False,
              "mig_ops only if xe_sriov_vfio_migration_supported()", "drivers/vfio/pci/xe/",
              "6.19"),
    DriverRow("nvgrace_gpu_vfio_pci", False, False, False, False, "",
              "drivers/vfio/pci/nvgrace-gpu/"),
    DriverRow("ism_vfio_pci", False, False, False, False, "", "drivers/vfio/pci/ism/ (s390)"),
    # stub log_ops: accept any range, never report a dirty page
    DriverRow("mtty", True, True, True, True, "", "samples/vfio-mdev/mtty.c"),
)

BY_NAME: dict[str, DriverRow] = {row.name: row for row in DRIVERS}
