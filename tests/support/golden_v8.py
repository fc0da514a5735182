"""Golden cases for QEMU 8.0-9.1 (Intel host, see ``golden.HOSTS``).

QEMU trees older than 10.0 are not on this machine: the wording and the rules come
from the patch mails quoted in reference §3.1 (rows 4', 5', 6', 8), §1.7 and §7,
each cited in ``source``. The range arithmetic starts from ``golden``'s docstring.
"""

from __future__ import annotations

from qmpdirty.demo.lab.vfio_scenario import QAT_VF, FabViommu, Scenario
from tests.support.golden import (
    BAR32M,
    HIGH,
    LEGACY_V80,
    MLX5,
    MULTI_V80,
    NO_DIRTY,
    NO_DIRTY_V81,
    QAT,
    R32,
    R64,
    VIOMMU_V80,
    Box,
    Golden,
    high_bar,
    host_dev,
    path,
    vdev,
)

H0, H1 = path("hostdev0"), path("hostdev1")
FD = "iommufd:/objects/iommufd0"
#: 8.0/8.1 have two buckets: a BAR >= 4 GiB widens the 64-bit one (pci64 is 8.2+):
#: min64 = 0x100000000 (dimm0mem), max64 = 0x380001ffffff (BAR end), length =
#: 0x380002000000 - 0x100000000 = 0x37ff02000000.
R64_WITH_BAR = (0x1_0000_0000, 0x37FF_0200_0000)
CAPS_2_42 = {"max_ranges": 2, "max_log2_address_space": 42}

V80 = (
    Golden(
        "v8.0-device", "intel",
        Scenario((8, 0, 5), (vdev("hostdev0", "0000:40:00.0", 4, x_enable_migration=True,
                                  bars=(high_bar(),)),)),
        (host_dev("0000:40:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        (Box("legacy:memory", "device", (H0,), (R32, R64_WITH_BAR), None),),
        topology="mlx5 VF, x-enable-migration=on, 64-bit BAR0 at 0x380000000000",
        source="8.0 vfio_migration_realize needs only x-enable-migration + mig v2 (§3.1 row "
               "8); two watermarks: commit 5255bbf4ec16 (§6)"),
    Golden(
        "v8.0-x-enable-off", "intel",
        Scenario((8, 0, 5), (vdev("hostdev0", "0000:41:00.0", 4),)),
        (host_dev("0000:41:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "blocked"),),
        (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(LEGACY_V80,),
        topology="mlx5 VF, x-enable-migration off (the 8.0 default)",
        source="8.0 vfio_migration_realize add_blocker catch-all (§3.1 row 8)"),
    Golden(
        "v8.0-viommu", "intel",
        Scenario((8, 0, 5), (vdev("hostdev0", "0000:42:00.0", 4, x_enable_migration=True,
                                  pci=QAT_VF),), viommu=FabViommu()),
        (host_dev("0000:42:00.0", "qat_vfio_pci", QAT),),
        ((H0, "all-dirty"),),
        (Box(f"legacy:viommu:{H0}", "all-dirty", (H0,)),),
        observed=(VIOMMU_V80,),
        topology="intel-iommu; QAT VF (no DMA logging), x-enable-migration=on",
        source="8.0 vfio_block_giommu_migration: one global blocker (commit e46883204c38, "
               "§3.1 6'); no dirty-tracking check before 8.1"),
)

V81 = (
    Golden(
        "v8.1-two-buckets", "intel",
        Scenario((8, 1, 5), (vdev("hostdev0", "0000:43:00.0", 4, bars=(high_bar(),)),)),
        (host_dev("0000:43:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        # mlx5 takes 2 ranges: no combining; total = 0x100000000 + 0x37ff02000000 =
        # 0x380002000000 -> roundup 2^46 -> log 46 > 42: -EOPNOTSUPP. Optimal 2-cover of
        # the sections: split at the largest hole (0x110000000..HIGH).
        (Box("legacy:memory", "device", (H0,), (R32, R64_WITH_BAR), False,
             ((0x0, 0x1_1000_0000), (HIGH, BAR32M))),),
        caps=({"bdf": "0000:43:00.0", **CAPS_2_42},),
        topology="mlx5 VF, BAR0 at 0x380000000000; device_caps max_ranges=2, log2 42",
        source="two buckets before 8.2 (§6); mlx5vf_create_tracker addr-space check (§2.6)"),
    Golden(
        "v8.2-pci64", "intel",
        Scenario((8, 2, 7), (vdev("hostdev0", "0000:44:00.0", 4, bars=(high_bar(),)),)),
        (host_dev("0000:44:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        # 3 ranges > 2: vfio_combine_iova_ranges merges the smallest gap (R32 | R64: gap
        # 0x100000000 - 0xffffffff = 1) -> (0, 0x110000000), (HIGH, 32M); total
        # 0x112000000 -> 2^33 -> 33 <= 42: fits.
        (Box("legacy:memory", "device", (H0,), (R32, R64, (HIGH, BAR32M)), True,
             ((0x0, 0x1_1000_0000), (HIGH, BAR32M))),),
        caps=({"bdf": "0000:44:00.0", **CAPS_2_42},),
        topology="same device on 8.2: the BAR gets the pci64 range",
        source="pull-vfio-20230911 'vfio/common: Separate vfio-pci ranges' (8.2, §6); "
               "10.0.2 common.c:850-890"),
    Golden(
        "v8.1-disabled", "intel",
        Scenario((8, 1, 5), (vdev("hostdev0", "0000:45:00.0", 4, enable_migration="off"),)),
        (host_dev("0000:45:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "blocked"),),
        (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=("0000:45:00.0: Migration is disabled for VFIO device",),
        topology="mlx5 VF, enable-migration=off",
        source="10.0.2 hw/vfio/migration.c:1075-1078 (8.1+, §3.1 row 1); migration never "
               "initialised -> no dirty_pages_supported -> type1"),
    Golden(
        "v8.1-no-dirty", "intel",
        Scenario((8, 1, 5), (vdev("hostdev0", "0000:46:00.0", 4, pci=QAT_VF),)),
        (host_dev("0000:46:00.0", "qat_vfio_pci", QAT),),
        ((H0, "blocked"),),
        (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY_V81.format("0000:46:00.0"),),
        topology="QAT VF (mig_ops, no log_ops), enable-migration=auto",
        source="8.1-9.0 vfio_migration_realize '!dirty_pages_supported && auto' (§3.1 4')"),
    Golden(
        "v8.1-forced", "intel",
        Scenario((8, 1, 5), (vdev("hostdev0", "0000:47:00.0", 4, enable_migration="on",
                                  pci=QAT_VF),)),
        (host_dev("0000:47:00.0", "qat_vfio_pci", QAT),),
        ((H0, "all-dirty"),),
        (Box("legacy:memory", "all-dirty", (H0,)),),
        topology="QAT VF, enable-migration=on",
        source="warn_report instead of a blocker with =on (10.0.2 migration.c:1106); type1 "
               "VFIO_IOMMU_DIRTY_PAGES reports all pinned pages dirty (§1.2)"),
    Golden(
        "v8.1-multi", "intel",
        Scenario((8, 1, 5), (vdev("hostdev0", "0000:48:00.0", 4, bars=(high_bar(),)),
                             vdev("hostdev1", "0000:48:00.1", 5, bars=(high_bar(BAR32M),)))),
        (host_dev("0000:48:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:48:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "device"), (H1, "device")),
        # both BARs in the 64-bit bucket: max64 = 0x380003ffffff -> length
        # 0x380004000000 - 0x100000000 = 0x37ff04000000
        (Box("legacy:memory", "device", (H0, H1), (R32, (0x1_0000_0000, 0x37FF_0400_0000)),
             None),),
        observed=(MULTI_V80,),
        topology="two mlx5 VFs (both P2P)",
        source="8.0-8.1 vfio_block_multiple_devices_migration: >1 device with migration "
               "(§3.1 5'; whether 8.1 still had it is UNVERIFIED, §8)"),
    Golden(
        "v8.1-failover", "intel",
        Scenario((8, 1, 5), (vdev("hostdev0", "0000:49:00.0", 4),
                             vdev("hostdev1", "0000:49:00.1", 5, failover_pair_id="net0"))),
        (host_dev("0000:49:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:49:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "all-dirty"), (H1, "failover")),
        (Box("legacy:memory", "all-dirty", (H0, H1)),),
        topology="two mlx5 VFs, the second a failover primary (failover_pair_id=net0)",
        source="10.0.2 hw/vfio/pci.c:3200 skips vfio_migration_realize; its "
               "dirty_pages_supported stays false, so common.c:220-234 picks type1"),
)

V90 = (
    Golden(
        "v9.0-iommufd", "intel",
        Scenario((9, 0, 4), (vdev("hostdev0", "0000:4a:00.0", 4, iommufd="iommufd0",
                                  pci=QAT_VF),), iommufds=("iommufd0",)),
        (host_dev("0000:4a:00.0", "qat_vfio_pci", QAT),),
        ((H0, "blocked"),),
        (Box(FD, "all-dirty", (H0,)),),
        observed=(NO_DIRTY_V81.format("0000:4a:00.0"),),
        topology="QAT VF on iommufd, host VT-d with SSADS",
        source="9.0 has the IOMMUFD backend but no HWPT dirty tracking (9.1, §7)"),
    Golden(
        "v9.0-iommufd-forced", "intel",
        Scenario((9, 0, 4), (vdev("hostdev0", "0000:4b:00.0", 4, iommufd="iommufd0",
                                  enable_migration="on", pci=QAT_VF),),
                 iommufds=("iommufd0",)),
        (host_dev("0000:4b:00.0", "qat_vfio_pci", QAT),),
        ((H0, "all-dirty"),),
        (Box(FD, "all-dirty", (H0,)),),
        topology="QAT VF on iommufd, enable-migration=on",
        source="<= 9.2 vfio_get_dirty_bitmap marks whole sections dirty when the container "
               "cannot track (§1.5)"),
    Golden(
        "v9.1-xdev-off", "intel",
        Scenario((9, 1, 3), (vdev("hostdev0", "0000:4c:00.0", 4,
                                  device_dirty_page_tracking="off"),)),
        (host_dev("0000:4c:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "blocked"),),
        (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY.format("0000:4c:00.0"),),
        topology="mlx5 VF, x-device-dirty-page-tracking=off, legacy container",
        source="10.0.2 migration.c:1096-1103 (9.1 text, commit 30b916778517)"),
    Golden(
        "v9.1-iommu", "intel",
        Scenario((9, 1, 3), (vdev("hostdev0", "0000:4d:00.0", 4, iommufd="iommufd0",
                                  pci=QAT_VF),
                             vdev("hostdev1", "0000:4d:00.1", 5, bars=(high_bar(),))),
                 iommufds=("iommufd0",)),
        (host_dev("0000:4d:00.0", "qat_vfio_pci", QAT),
         host_dev("0000:4d:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "iommu"), (H1, "device")),
        (Box(FD, "iommu", (H0,)),
         Box("legacy:memory", "device", (H1,), (R32, R64, (HIGH, BAR32M)), None)),
        topology="QAT VF on iommufd (VT-d SSADS, scalable mode) + mlx5 VF on type1",
        source="10.0.2 iommufd.c:320-348 dirty HWPT; migration.c:1096 passes on "
               "iommu_dirty_tracking; common.c:1086 per container"),
    Golden(
        "v9.1-iommufd-forced", "intel",
        Scenario((9, 1, 3), (vdev("hostdev0", "0000:4e:00.0", 4, iommufd="iommufd0",
                                  enable_migration="on", pci=QAT_VF),),
                 iommufds=("iommufd0",)),
        (host_dev("0000:4e:00.0", "qat_vfio_pci", QAT, iommu="dmar1"),),
        ((H0, "all-dirty"),),
        (Box(FD, "all-dirty", (H0,)),),
        topology="QAT VF on iommufd behind a pre-scalable-mode VT-d, enable-migration=on",
        source="no dirty HWPT; <= 9.2 QEMU-side all-dirty fallback (§1.5)"),
)

CASES = (*V80, *V81, *V90)
