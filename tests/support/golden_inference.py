"""Golden cases for QEMU's word over assumptions: hosts without debugfs ``features``.

On the hosts ``bare`` and ``bare-sm-unknown`` (``golden.HOSTS``) debugfs is not
mounted and nothing is stated in ``[[device_caps]]``: qmpdirty knows the bound driver
(the driver table, basis ``driver``) and, from sysfs, the host IOMMU (unknown on
``bare-sm-unknown``'s dmar0: its scalable mode is not readable). Each case's
``FakeDevice`` still carries the device's **true** debugfs features (written nowhere,
since debugfs is missing), and ``observed`` is what QEMU raises for that truth, written
by hand from hw/vfio/migration.c ``vfio_migration_realize`` and hw/vfio/common.c
``vfio_block_multiple_devices_migration`` (QEMU 10.0.2/10.2.2; 8.x/9.x/11.0 per
reference §1.3/§3.1). Blockers "shown": QEMU reports one, which settles a fact;
"hidden": QEMU reports nothing, which proves what its checks passed - and, under
``enable-migration=on`` (blockers become realize errors, missing dirty tracking only
warns), hardly anything.

Where QEMU's state cannot settle a fact, the expected mode is what qmpdirty publishes
(basis ``assumed``, ``complete`` false), and ``source`` says what QEMU really does.
The range arithmetic starts from ``golden``'s docstring (no BARs here: 32 + 64 only).
"""

from __future__ import annotations

from dataclasses import replace

from qmpdirty.demo.lab.vfio_scenario import (
    HISI_VF,
    NVME,
    PDS_VF,
    QAT_VF,
    FabDevice,
    FabViommu,
    PciId,
    Scenario,
)
from tests.support.golden import (
    HISI,
    LEGACY_V80,
    MLX5,
    MULTI_V80,
    NO_DIRTY,
    NO_DIRTY_V81,
    NO_KERNEL,
    P2P,
    PDS,
    QAT,
    R32,
    R64,
    VIOMMU,
    Box,
    Golden,
    host_dev,
    path,
    vdev,
)

H0, H1 = path("hostdev0"), path("hostdev1")
FD = "iommufd:/objects/iommufd0"
V82, V90, V102, V110 = (8, 2, 1), (9, 0, 2), (10, 2, 2), (11, 0, 0)
NO_BARS = (R32, R64)
VIRTIO_VF = PciId(0x1AF4, 0x1041, 0x0200, "Ethernet controller")  # virtio-net VF
XE_VF = PciId(0x8086, 0xE20B, 0x0380, "Display controller")
GRACE_GPU = PciId(0x10DE, 0x2342, 0x0302, "3D controller")
ACME_VF = PciId(0x1D0F, 0xEFA2, 0x0200, "Ethernet controller")
MLX5_NO_LOGGING = ("stop-copy", "p2p", "pre-copy")  # firmware without adv_virtualization
VIRTIO = ("stop-copy", "p2p", "pre-copy")
XE = ("stop-copy", "p2p")
ACME = ("stop-copy", "dirty-tracking")  # an out-of-tree driver: DMA logging, no P2P
#: vfio_migration_realize, no per-device blocker: vfio_migration_init succeeded (else
#: -ENOTTY, migration.c:1084) and the dirty-tracking check passed (migration.c:1096);
#: on the legacy backend iommu_dirty_tracking is never set, so that is DMA logging
PASSED = "no per-device blocker: init and DMA-logging probe succeeded (migration.c:1081-1103)"


def iommufd(scenario: Scenario) -> Scenario:
    return replace(scenario, iommufds=("iommufd0",))


def on_fd(ident: str, bdf: str, slot: int, pci: PciId | None = None) -> FabDevice:
    """A vfio-pci device on ``-object iommufd,id=iommufd0``."""
    return vdev(ident, bdf, slot, pci=pci, iommufd="iommufd0")


DRIVERS = (
    Golden(
        "inf-mlx5-pair", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:80:00.0", 4), vdev("hostdev1", "0000:80:00.1", 5))),
        (host_dev("0000:80:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:80:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "device"), (H1, "device")),
        (Box("legacy:memory", "device", (H0, H1), NO_BARS, None),),
        bases=("qemu", "qemu"),
        named_facts=((H0, "migration", True, "qemu"), (H0, "dma_logging", True, "qemu"),
               (H1, "dma_logging", True, "qemu")),
        topology="two mlx5 VFs, no debugfs (the issue's case); QEMU reports nothing",
        source=f"{PASSED}; no P2P blocker: both set VFIO_MIGRATION_P2P (common.c:92-135)"),
    Golden(
        "inf-mlx5-no-logging", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:81:00.0", 4),)),
        (host_dev("0000:81:00.0", "mlx5_vfio_pci", MLX5_NO_LOGGING),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY.format("0000:81:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "migration", True, "qemu"), (H0, "dma_logging", False, "qemu")),
        topology="mlx5 VF whose firmware lacks adv_virtualization (no log_ops); shown",
        source="migration.c:1096-1103: PROBE(DMA_LOGGING_START) fails, legacy backend"),
    Golden(
        "inf-mlx5-pf", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:82:00.0", 4),)),
        (host_dev("0000:82:00.0", "mlx5_vfio_pci", None),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_KERNEL.format("0000:82:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "migration", False, "qemu"),),
        topology="mlx5 PF bound to mlx5_vfio_pci (mig_ops only on a VF); shown",
        source="migration.c:1081-1085: VFIO_DEVICE_FEATURE_MIGRATION -ENOTTY"),
    Golden(
        "inf-pds", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:83:00.0", 4, pci=PDS_VF),)),
        (host_dev("0000:83:00.0", "pds_vfio_pci", PDS),),
        ((H0, "device"),), (Box("legacy:memory", "device", (H0,), NO_BARS, None),),
        bases=("qemu",), named_facts=((H0, "migration", True, "qemu"),
                                (H0, "dma_logging", True, "qemu")),
        topology="pds VF; QEMU reports nothing", source=PASSED),
    Golden(
        "inf-hisi", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:84:00.0", 4, pci=HISI_VF),)),
        (host_dev("0000:84:00.0", "hisi_acc_vfio_pci", HISI),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY.format("0000:84:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "migration", True, "qemu"), (H0, "dma_logging", False, "qemu")),
        topology="HiSilicon VF (no log_ops); shown",
        source="migration.c:1096-1103: the blocker also proves mig_ops (init ran first)"),
    Golden(
        "inf-virtio-legacy", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:85:00.0", 4, pci=VIRTIO_VF),)),
        (host_dev("0000:85:00.0", "virtio_vfio_pci", VIRTIO),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY.format("0000:85:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        topology="virtio VF on type1 (no log_ops); shown",
        source="migration.c:1096-1103: the legacy backend never sets iommu_dirty_tracking"),
    Golden(
        "inf-virtio-iommufd", "bare",
        iommufd(Scenario(V102, (on_fd("hostdev0", "0000:86:00.0", 4, pci=VIRTIO_VF),))),
        (host_dev("0000:86:00.0", "virtio_vfio_pci", VIRTIO),),
        ((H0, "iommu"),), (Box(FD, "iommu", (H0,)),),
        bases=("driver",),
        named_facts=((H0, "migration", True, "qemu"), (H0, "dma_logging", False, "driver"),
               (H0, "iommu_dirty_tracking", True, "host")),
        topology="virtio VF on iommufd, VT-d with SSADS; QEMU reports nothing",
        source="iommufd.c:320-348 dirty HWPT passes migration.c:1096; the mode rests on the "
               "driver table's 'no log_ops'"),
    Golden(
        "inf-qat-no-hwpt", "bare",
        iommufd(Scenario(V102, (on_fd("hostdev0", "0000:87:00.0", 4, pci=QAT_VF),))),
        (host_dev("0000:87:00.0", "qat_vfio_pci", QAT, iommu="dmar1"),),
        ((H0, "blocked"),), (Box(FD, "none", (H0,)),),
        observed=(NO_DIRTY.format("0000:87:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "dma_logging", False, "qemu"),
                     (H0, "iommu_dirty_tracking", False, "host")),
        topology="QAT VF on iommufd behind pre-scalable-mode VT-d; shown",
        source="migration.c:1096-1103: no log_ops and no dirty HWPT"),
    Golden(
        "inf-xe", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:88:00.0", 4, pci=XE_VF),)),
        (host_dev("0000:88:00.0", "xe-vfio-pci", XE),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY.format("0000:88:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "migration", True, "qemu"),),
        topology="Intel xe GPU VF (xe-vfio-pci: STOP_COPY|P2P, no log_ops); shown",
        source="migration.c:1096-1103 (reference §5.3 driver table)"),
    Golden(
        "inf-nvgrace", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:89:00.0", 4, pci=GRACE_GPU),)),
        (host_dev("0000:89:00.0", "nvgrace_gpu_vfio_pci", None),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_KERNEL.format("0000:89:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        topology="Grace Hopper GPU (nvgrace_gpu_vfio_pci: no mig_ops); shown",
        source="migration.c:1081-1085 -ENOTTY; the driver table agrees"),
    Golden(
        "inf-vfio-pci", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:8a:00.0", 4, pci=NVME),)),
        (host_dev("0000:8a:00.0", "vfio-pci", None),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_KERNEL.format("0000:8a:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        topology="NVMe on plain vfio-pci; shown",
        source="migration.c:1081-1085 -ENOTTY; the driver table agrees"),
)

HIDDEN = (
    Golden(
        "inf-mlx5-forced", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:8b:00.0", 4, enable_migration="on"),)),
        (host_dev("0000:8b:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "all-dirty"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        bases=("assumed",), complete=False,
        named_facts=((H0, "migration", True, "qemu"), (H0, "dma_logging", False, "assumed")),
        topology="mlx5 VF, enable-migration=on: QEMU's blockers hidden",
        source="=on: vfio_block_migration makes blockers realize errors, missing tracking "
               "only warns (migration.c:1096-1106): the device's existence proves mig_ops "
               "only. QEMU itself uses DMA logging here; qmpdirty says 'assumed'"),
    Golden(
        "inf-mlx5-iommufd-either", "bare-sm-unknown",
        iommufd(Scenario(V102, (on_fd("hostdev0", "0000:8c:00.0", 4),))),
        (host_dev("0000:8c:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "iommu"),), (Box(FD, "iommu", (H0,)),),
        bases=("assumed",), complete=False,
        named_facts=((H0, "dma_logging", False, "assumed"),
               (H0, "iommu_dirty_tracking", True, "assumed")),
        topology="mlx5 VF on iommufd, VT-d scalable mode unknown; QEMU reports nothing",
        source="the check passes with DMA logging or a dirty HWPT (migration.c:1096): which "
               "one is unknown. QEMU logs with the device here (container.c:175)"),
    Golden(
        "inf-qat-hwpt", "bare-sm-unknown",
        iommufd(Scenario(V102, (on_fd("hostdev0", "0000:8d:00.0", 4, pci=QAT_VF),))),
        (host_dev("0000:8d:00.0", "qat_vfio_pci", QAT),),
        ((H0, "iommu"),), (Box(FD, "iommu", (H0,)),),
        bases=("driver",), named_facts=((H0, "iommu_dirty_tracking", True, "driver"),),
        topology="QAT VF on iommufd, VT-d scalable mode unknown (on, in truth); QEMU "
                 "reports nothing",
        source="QAT has no log_ops (driver table), so the check passed on a dirty HWPT "
               "(iommufd.c:320-348)"),
    Golden(
        "inf-qat-shown-dmar1", "bare-sm-unknown",
        iommufd(Scenario(V102, (on_fd("hostdev0", "0000:8d:01.0", 4, pci=QAT_VF),))),
        (host_dev("0000:8d:01.0", "qat_vfio_pci", QAT, iommu="dmar1"),),
        ((H0, "blocked"),), (Box(FD, "none", (H0,)),),
        observed=(NO_DIRTY.format("0000:8d:01.0"),), bases=("qemu",), blocker_bases=("qemu",),
        topology="the same host, QAT VF behind the pre-scalable-mode unit; shown",
        source="migration.c:1096-1103"),
)

ORDER_AND_P2P = (
    Golden(
        "inf-hisi-then-mlx5", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:8e:00.0", 4, pci=HISI_VF),
                        vdev("hostdev1", "0000:8e:00.1", 5))),
        (host_dev("0000:8e:00.0", "hisi_acc_vfio_pci", HISI),
         host_dev("0000:8e:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "blocked"), (H1, "all-dirty")), (Box("legacy:memory", "all-dirty", (H0, H1)),),
        observed=(NO_DIRTY.format("0000:8e:00.0"), P2P), bases=("qemu", "qemu"),
        blocker_bases=("qemu", "driver"),
        topology="HiSilicon VF then mlx5 VF; both blockers shown",
        source="hisi keeps migration under auto (migration.c:1124-1130), mlx5's check "
               "counts it (common.c:98); hisi's missing P2P is the driver table's"),
    Golden(
        "inf-unknown-driver-p2p", "bare",
        Scenario(V102, (vdev("hostdev0", "0000:8f:00.0", 4, pci=ACME_VF),
                        vdev("hostdev1", "0000:8f:00.1", 5, pci=ACME_VF))),
        (host_dev("0000:8f:00.0", "acme_vfio_pci", ACME),
         host_dev("0000:8f:00.1", "acme_vfio_pci", ACME)),
        ((H0, "device"), (H1, "device")),
        (Box("legacy:memory", "device", (H0, H1), NO_BARS, None),),
        observed=(P2P,), bases=("qemu", "qemu"), blocker_bases=("assumed",), complete=False,
        topology="two VFs of a driver not in the table; the P2P blocker shown",
        source=f"{PASSED}; common.c:92-135: one of them lacks P2P, which is unknown"),
)

VERSIONS = (
    Golden(
        "inf-v9.0-iommufd", "bare",
        iommufd(Scenario(V90, (on_fd("hostdev0", "0000:90:00.0", 4),))),
        (host_dev("0000:90:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),), (Box(FD, "device", (H0,), NO_BARS, None),),
        bases=("qemu",), named_facts=((H0, "dma_logging", True, "qemu"),),
        topology="mlx5 VF on iommufd, QEMU 9.0 (no HWPT dirty tracking yet); nothing shown",
        source="8.1-9.0 check only !dirty_pages_supported (§3.1 4'), IOMMUFD dirty is 9.1"),
    Golden(
        "inf-v8.2-hisi", "bare",
        Scenario(V82, (vdev("hostdev0", "0000:91:00.0", 4, pci=HISI_VF),)),
        (host_dev("0000:91:00.0", "hisi_acc_vfio_pci", HISI),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY_V81.format("0000:91:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        topology="HiSilicon VF, QEMU 8.2 wording; shown",
        source="8.1-9.0 text '... doesn't support device dirty tracking' (§3.1 4')"),
    Golden(
        "inf-v11.0-viommu", "bare",
        Scenario(V110, (vdev("hostdev0", "0000:92:00.0", 4),), viommu=FabViommu()),
        (host_dev("0000:92:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "blocked"),), (Box(f"legacy:viommu:{H0}", "device", (H0,), (), None),),
        observed=(VIOMMU.format("0000:92:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "dma_logging", True, "qemu"),),
        topology="intel-iommu; mlx5 VF behind it, QEMU 11.0; shown",
        source="11.0 blocks vIOMMU only for a device that DMA-logs "
               "(!vfio_device_dirty_pages_disabled, §1.3)"),
    Golden(
        "inf-v8.0-unattributed", "bare",
        Scenario((8, 0, 5), (vdev("hostdev0", "0000:93:00.0", 4, x_enable_migration=True),
                             vdev("hostdev1", "0000:93:00.1", 5, x_enable_migration=True))),
        (host_dev("0000:93:00.0", "mlx5_vfio_pci", None),
         host_dev("0000:93:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "all-dirty"), (H1, "all-dirty")), (Box("legacy:memory", "all-dirty", (H0, H1)),),
        observed=(LEGACY_V80,), predicted=(MULTI_V80,), bases=("assumed", "assumed"),
        blocker_bases=("assumed",), complete=False,
        unknown=((H0, "migration"), (H0, "dma_logging"), (H1, "migration"),
                 (H1, "dma_logging"), (None, "migration")),
        topology="mlx5 PF and mlx5 VF, x-enable-migration=on, QEMU 8.0",
        source="8.0's catch-all names no device: which one failed vfio_migration_init is "
               "unknown, so the disagreement names the unknown facts (§3.1 row 8, 5')"),
)

CASES = (*DRIVERS, *HIDDEN, *ORDER_AND_P2P, *VERSIONS)
