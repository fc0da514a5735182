"""Golden cases for QEMU 10.0-11.0, and the live (hot-plug) ones.

10.0.2 and 10.2.2 were read in full (line numbers are 10.0.2's unless marked); 11.0
follows the pull-vfio-20260113 patches quoted in reference §1.3/§2.2. The range
arithmetic starts from ``golden``'s docstring.
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
    Scenario,
)
from tests.support.golden import (
    BAR32M,
    BYPASS_BUS,
    HIGH,
    HISI,
    LOW_BAR,
    MLX5,
    MLX5_NO_P2P,
    NO_DIRTY,
    NO_KERNEL,
    P2P,
    PDS,
    QAT,
    R32,
    R32_V11,
    R64,
    VIOMMU,
    Box,
    Golden,
    high_bar,
    host_dev,
    path,
    vdev,
)

H0, H1 = path("hostdev0"), path("hostdev1")
ANON0 = "/machine/peripheral-anon/device[0]"
FD = "iommufd:/objects/iommufd0"
V100, V102, V110 = (10, 0, 2), (10, 2, 2), (11, 0, 0)
ONE_BAR = (R32, R64, (HIGH, BAR32M))  # one 32 MiB BAR at HIGH, QEMU 8.2-10.2
#: the optimal 3-cover of the sections: split at the two real holes, 0x20000000..
#: 0xfffc0000 and 0x110000000..HIGH; (0xfffc0000, 0x110000000 - 0xfffc0000 = 0x10040000)
OPTIMAL_3 = ((0x0, 0x2000_0000), (0xFFFC_0000, 0x1004_0000), (HIGH, BAR32M))
#: everything in one range: 0 .. HIGH + 32 MiB - 1
ALL_IN_ONE = ((0x0, HIGH + BAR32M),)


def iommufd(scenario: Scenario) -> Scenario:
    return replace(scenario, iommufds=("iommufd0",))


BASICS = (
    Golden(
        "v10.0-no-driver", "intel",
        Scenario(V100, (vdev("hostdev0", "0000:50:00.0", 4, pci=NVME),)),
        (host_dev("0000:50:00.0", "vfio-pci", None),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_KERNEL.format("0000:50:00.0"),),
        topology="NVMe bound to plain vfio-pci (no mig_ops)",
        source="migration.c:1081-1085: VFIO_DEVICE_FEATURE_MIGRATION -ENOTTY"),
    Golden(
        "v10.0-anon", "intel",
        Scenario(V100, (vdev(None, "0000:51:00.0", 4, pre_copy_dirty_page_tracking="off",
                             bars=(high_bar(),)),)),
        (host_dev("0000:51:00.0", "mlx5_vfio_pci", MLX5),),
        ((ANON0, "device"),),
        # the BAR's owner prints as dev path=/machine/peripheral-anon/device[0]: still
        # this container's vfio-pci device -> pci64 (common.c:828-848)
        (Box("legacy:memory", "device", (ANON0,), ONE_BAR, None),),
        topology="mlx5 VF without id, x-pre-copy-dirty-page-tracking=off",
        source="x-pre-copy... only changes sync timing, no blocker (§3.1); "
               "common.c:850-890"),
    Golden(
        "v10.0-no-dirty", "intel",
        Scenario(V100, (vdev("hostdev0", "0000:52:00.0", 4, pci=QAT_VF),)),
        (host_dev("0000:52:00.0", "qat_vfio_pci", QAT),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_DIRTY.format("0000:52:00.0"),),
        topology="QAT VF, legacy container, enable-migration=auto",
        source="migration.c:1096-1103: the legacy backend never sets iommu_dirty_tracking"),
    Golden(
        "v10.0-iommufd-forced", "intel",
        iommufd(Scenario(V100, (vdev("hostdev0", "0000:53:00.0", 4, iommufd="iommufd0",
                                     enable_migration="on", pci=QAT_VF),))),
        (host_dev("0000:53:00.0", "qat_vfio_pci", QAT, iommu="dmar1"),),
        ((H0, "unsafe"),), (Box(FD, "none", (H0,)),),
        topology="QAT VF on iommufd, VT-d without SSADS, enable-migration=on",
        source="since 10.0 log_sync waits for 'tracking started', which never happens "
               "without a dirty HWPT (container-base.c:63, §1.5)"),
    Golden(
        "v10.2-legacy-forced", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:5a:00.0", 4, enable_migration="on",
                             pci=QAT_VF),)),
        (host_dev("0000:5a:00.0", "qat_vfio_pci", QAT),),
        ((H0, "all-dirty"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        topology="QAT VF, type1, enable-migration=on",
        source="10.2.2 migration.c:1196 warn only; type1 reports all dirty (§1.2)"),
    Golden(
        "v10.2-xdev-off-iommu", "intel",
        iommufd(Scenario(V102, (vdev("hostdev0", "0000:5b:00.0", 4, iommufd="iommufd0",
                                     device_dirty_page_tracking="off"),))),
        (host_dev("0000:5b:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "iommu"),), (Box(FD, "iommu", (H0,)),),
        topology="mlx5 VF on iommufd (VT-d SSADS), x-device-dirty-page-tracking=off",
        source="10.2.2 container.c:175 refuses DMA logging; HWPT dirty tracking instead"),
    Golden(
        "v10.2-failover", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:59:00.0", 4),
                        vdev("hostdev1", "0000:59:00.1", 5, failover_pair_id="net0"))),
        (host_dev("0000:59:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:59:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "all-dirty"), (H1, "failover")),
        (Box("legacy:memory", "all-dirty", (H0, H1)),),
        topology="two mlx5 VFs, the second a failover primary",
        source="10.2.2 pci.c:3521; container.c:175 sees its dirty_pages_supported=false"),
)

MULTI = (
    Golden(
        "v10.2-p2p", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:54:00.0", 4, bars=(high_bar(),)),
                        vdev("hostdev1", "0000:54:00.1", 5, bars=(high_bar(BAR32M),)))),
        (host_dev("0000:54:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:54:00.1", "mlx5_vfio_pci", MLX5_NO_P2P)),
        ((H0, "device"), (H1, "device")),
        # pci64 = both BARs: HIGH .. HIGH + 0x3ffffff -> (HIGH, 0x4000000)
        (Box("legacy:memory", "device", (H0, H1), (R32, R64, (HIGH, 2 * BAR32M)), None),),
        observed=(P2P,),
        topology="two mlx5 VFs, the second without P2P (debugfs features)",
        source="common.c:92-135 vfio_block_multiple_devices_migration (8.2+)"),
    Golden(
        "v10.2-order-mlx5-first", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:55:00.0", 4),
                        vdev("hostdev1", "0000:55:00.1", 5, pci=HISI_VF))),
        (host_dev("0000:55:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:55:00.1", "hisi_acc_vfio_pci", HISI)),
        ((H0, "all-dirty"), (H1, "blocked")),
        (Box("legacy:memory", "all-dirty", (H0, H1)),),
        observed=(NO_DIRTY.format("0000:55:00.1"),),
        topology="mlx5 VF at 04.0, then HiSilicon VF (no P2P, no DMA logging) at 05.0",
        source="realize order: mlx5 is alone when it checks; hisi jumps to add_blocker "
               "before vfio_block_multiple_devices_migration (migration.c:1099-1110)"),
    Golden(
        "v10.2-order-hisi-first", "intel",
        Scenario(V102, (vdev("hostdev1", "0000:56:00.1", 4, pci=HISI_VF),
                        vdev("hostdev0", "0000:56:00.0", 5))),
        (host_dev("0000:56:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:56:00.1", "hisi_acc_vfio_pci", HISI)),
        ((H1, "blocked"), (H0, "all-dirty")),
        (Box("legacy:memory", "all-dirty", (H1, H0)),),
        observed=(NO_DIRTY.format("0000:56:00.1"), P2P),
        topology="the same two VFs, HiSilicon first (04.0)",
        source="hisi keeps vbasedev->migration under auto (vfio_block_migration returns 0, "
               "no deinit: migration.c:1124-1130), so mlx5's check counts it (common.c:98)"),
    Golden(
        "v10.2-mixed-containers", "intel",
        iommufd(Scenario(V102, (vdev("hostdev0", "0000:57:00.0", 4, bars=(high_bar(),)),
                                vdev("hostdev1", "0000:57:00.1", 5, iommufd="iommufd0",
                                     bars=(high_bar(2 * BAR32M),))))),
        (host_dev("0000:57:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:57:00.1", "mlx5_vfio_pci", MLX5)),
        ((H0, "device"), (H1, "device")),
        # legacy: hostdev1's BAR (other container) goes to 64: max64 = HIGH + 0x5ffffff,
        # length 0x380006000000 - 0x100000000 = 0x37ff06000000 -> overlaps its pci64
        # range (HIGH, 32M): the kernel says -EINVAL. iommufd: hostdev0's BAR in 64:
        # (0x100000000, 0x37ff02000000), pci64 (HIGH + 0x4000000, 32M): disjoint.
        (Box("legacy:memory", "device", (H0,),
             (R32, (0x1_0000_0000, 0x37FF_0600_0000), (HIGH, BAR32M)), False),
         Box(FD, "device", (H1,),
             (R32, (0x1_0000_0000, 0x37FF_0200_0000), (HIGH + 2 * BAR32M, BAR32M)), None)),
        topology="mlx5 VF on type1 + mlx5 VF on iommufd: two containers",
        source="common.c:828-848 'this container' owners; vfio_main.c overlap check (§2.4)"),
    Golden(
        "v10.2-mixed-hwpt", "intel",
        iommufd(Scenario(V102, (vdev("hostdev0", "0000:58:00.0", 4, iommufd="iommufd0",
                                     pci=QAT_VF),
                                vdev("hostdev1", "0000:58:00.1", 5, iommufd="iommufd0")))),
        (host_dev("0000:58:00.0", "qat_vfio_pci", QAT),
         host_dev("0000:58:00.1", "mlx5_vfio_pci", MLX5, iommu="dmar1")),
        ((H0, "iommu"), (H1, "unsafe")),
        (Box(FD, "iommu", (H0, H1)),),
        topology="QAT VF (VT-d SSADS) realized first + mlx5 VF (VT-d without SSADS), one "
                 "iommufd",
        source="iommufd.c:289-348: mlx5 cannot join QAT's dirty HWPT and gets a plain one; "
               "QAT cannot DMA-log, so the container uses HWPT tracking"),
)

VIOMMU_CASES = (
    Golden(
        "v10.2-viommu-bypass", "intel",
        iommufd(Scenario(V102, (vdev("hostdev0", "0000:5c:00.0", 0, bus=BYPASS_BUS,
                                     bars=(high_bar(),)),
                                vdev("hostdev1", "0000:5c:00.1", 4, iommufd="iommufd0",
                                     pci=QAT_VF)), viommu=FabViommu())),
        (host_dev("0000:5c:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:5c:00.1", "qat_vfio_pci", QAT)),
        ((H0, "device"), (H1, "blocked")),
        (Box("legacy:memory", "device", (H0,), ONE_BAR, None),
         Box(f"iommufd:viommu:{H1}", "iommu", (H1,))),
        observed=(VIOMMU.format("0000:5c:00.1"),),
        topology="intel-iommu; mlx5 VF behind pxb bypass_iommu=true; QAT VF on iommufd "
                 "behind the vIOMMU",
        source="common.c:147-150 vfio_viommu_preset; hw/pci/pci.c pci_bus_bypass_iommu; "
               "migration.c:1115-1118 (<= 10.2: any device)"),
    Golden(
        "v11.0-viommu-bypass", "intel",
        iommufd(Scenario(V110, (vdev("hostdev0", "0000:5d:00.0", 0, bus=BYPASS_BUS,
                                     bars=(high_bar(),)),
                                vdev("hostdev1", "0000:5d:00.1", 4, iommufd="iommufd0",
                                     pci=QAT_VF)), viommu=FabViommu())),
        (host_dev("0000:5d:00.0", "mlx5_vfio_pci", MLX5),
         host_dev("0000:5d:00.1", "qat_vfio_pci", QAT)),
        ((H0, "device"), (H1, "iommu")),
        (Box("legacy:memory", "device", (H0,), (R32_V11, R64, (HIGH, BAR32M)), None),
         Box(f"iommufd:viommu:{H1}", "iommu", (H1,))),
        topology="the same VM on 11.0",
        source="11.0 'Allow live migration with vIOMMU without VFs using device dirty "
               "tracking' (§1.3); read-only sections bypassed (§2.2)"),
    Golden(
        "v11.0-viommu-devlog", "intel",
        Scenario(V110, (vdev("hostdev0", "0000:5e:00.0", 4, bars=(high_bar(),)),),
                 viommu=FabViommu()),
        (host_dev("0000:5e:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "blocked"),),
        # QEMU computes the ranges over the device's vIOMMU address space (listener on
        # bcontainer->space->as, 10.2.2 listener.c), not over "memory": unknown here.
        (Box(f"legacy:viommu:{H0}", "device", (H0,), (), None),),
        observed=(VIOMMU.format("0000:5e:00.0"),),
        topology="intel-iommu; mlx5 VF (DMA logging) behind it",
        source="11.0 keeps the vIOMMU blocker for devices that use DMA logging (§1.3)",),
    Golden(
        "v11.0-viommu-forced", "intel",
        Scenario(V110, (vdev("hostdev0", "0000:5f:00.0", 4, enable_migration="on",
                             pci=QAT_VF),), viommu=FabViommu()),
        (host_dev("0000:5f:00.0", "qat_vfio_pci", QAT),),
        ((H0, "all-dirty"),), (Box(f"legacy:viommu:{H0}", "all-dirty", (H0,)),),
        topology="intel-iommu; QAT VF on type1, enable-migration=on",
        source="11.0: vfio_device_dirty_pages_disabled -> no vIOMMU blocker (on 10.2 the "
               "blocker would fail realize with =on)"),
)

RANGES = (
    Golden(
        "v10.2-rom", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:60:00.0", 4, bars=(high_bar(), LOW_BAR)),)),
        (host_dev("0000:60:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        # BAR2 (0xc0000000, 16M, iova < 4 GiB) joins the 32-bit bucket; pc.bios already
        # reaches 0xffffffff
        (Box("legacy:memory", "device", (H0,), ONE_BAR, None),),
        topology="mlx5 VF, 64-bit BAR0 high + 32-bit BAR2 at 0xc0000000",
        source="common.c:850-890: vfio BARs below 4 GiB stay in the 32-bit bucket"),
    Golden(
        "v11.0-rom", "intel",
        Scenario(V110, (vdev("hostdev0", "0000:61:00.0", 4, bars=(high_bar(), LOW_BAR)),)),
        (host_dev("0000:61:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        # without rom sections max32 = BAR2 end 0xc0ffffff -> (0, 0xc1000000)
        (Box("legacy:memory", "device", (H0,), ((0x0, 0xC100_0000), R64, (HIGH, BAR32M)),
             None),),
        topology="the same device on 11.0",
        source="11.0 'vfio/listener: Bypass readonly region for dirty tracking' (§2.2)"),
    Golden(
        "v10.2-fit-k3", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:62:00.0", 4, bars=(high_bar(),)),)),
        (host_dev("0000:62:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        # 3 ranges <= 3; total 0x100000000 + 0x10000000 + 0x2000000 = 0x112000000 -> 2^33
        (Box("legacy:memory", "device", (H0,), ONE_BAR, True, OPTIMAL_3),),
        caps=({"bdf": "0000:62:00.0", "max_ranges": 3, "max_log2_address_space": 33},),
        topology="mlx5 VF; device_caps max_ranges=3, log2 33",
        source="mlx5vf_create_tracker: log_addr_space_size 33 <= 33 (§2.6)"),
    Golden(
        "v10.2-nofit-k1", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:63:00.0", 4, bars=(high_bar(),)),)),
        (host_dev("0000:63:00.0", "mlx5_vfio_pci", MLX5),),
        ((H0, "device"),),
        # req 1: [first.start, last.last] = (0, HIGH + 32M); 0x380002000000 -> 2^46 > 42
        (Box("legacy:memory", "device", (H0,), ONE_BAR, False, ALL_IN_ONE),),
        caps=({"bdf": "0000:63:00.0", "max_ranges": 1, "max_log2_address_space": 42},),
        topology="mlx5 VF; device_caps max_ranges=1, log2 42 (the 2^42 of §2.6)",
        source="vfio_combine_iova_ranges req_nodes=1 (§2.5); -EOPNOTSUPP (§2.6)"),
    Golden(
        "v10.2-pds-k1", "intel",
        Scenario(V102, (vdev("hostdev0", "0000:64:00.0", 4, bars=(high_bar(),),
                             pci=PDS_VF),)),
        (host_dev("0000:64:00.0", "pds_vfio_pci", PDS),),
        ((H0, "device"),),
        # one region of 0x380002000000 / 4 KiB = 0x380002000 pages >= 2^32: u32 overflow
        (Box("legacy:memory", "device", (H0,), ONE_BAR, False, ALL_IN_ONE),),
        caps=({"bdf": "0000:64:00.0", "max_ranges": 1},),
        topology="pds VF; device_caps max_ranges=1",
        source="pds_vfio_dirty_enable: page_count is a u32 (§2.6)"),
    Golden(
        "v10.2-vfio-user", "intel",
        Scenario(V102, (FabDevice("hostdev0", None, 4 << 3, qom_type="vfio-user-pci"),)),
        (), ((H0, "unsafe"),), (Box(f"vfio-user:{H0}", "none", (H0,)),),
        topology="vfio-user-pci (no host device; no VFIO migration properties)",
        source="10.2.2 hw/vfio-user/pci.c:228 'No live migration support yet', no blocker"),
)

OTHER_HOSTS = (
    Golden(
        "v10.2-sm-off", "intel-sm-off",
        iommufd(Scenario(V102, (vdev("hostdev0", "0000:70:00.0", 4, iommufd="iommufd0",
                                     pci=QAT_VF),))),
        (host_dev("0000:70:00.0", "qat_vfio_pci", QAT),),
        ((H0, "blocked"),), (Box(FD, "none", (H0,)),),
        observed=(NO_DIRTY.format("0000:70:00.0"),),
        topology="QAT VF on iommufd; VT-d has SSADS but intel_iommu=sm_off",
        source="ssads_supported() needs scalable mode (§5.1): no dirty HWPT"),
    Golden(
        "v11.0-sm-off-forced", "intel-sm-off",
        iommufd(Scenario(V110, (vdev("hostdev0", "0000:71:00.0", 4, iommufd="iommufd0",
                                     enable_migration="on", pci=QAT_VF),))),
        (host_dev("0000:71:00.0", "qat_vfio_pci", QAT),),
        ((H0, "unsafe"),), (Box(FD, "none", (H0,)),),
        topology="same host, enable-migration=on, 11.0",
        source="as v10.0-iommufd-forced; 11.0 large-memory check applies to type1 only"),
    Golden(
        "v10.2-amd-iommu", "amd",
        iommufd(Scenario(V102, (vdev("hostdev0", "0000:72:00.0", 4, iommufd="iommufd0",
                                     pci=QAT_VF),))),
        (host_dev("0000:72:00.0", "qat_vfio_pci", QAT, iommu="ivhd0"),),
        ((H0, "iommu"),), (Box(FD, "iommu", (H0,)),),
        topology="QAT VF on iommufd; AMD-Vi with HDSup",
        source="amd_iommu_hd_support (§5.1); iommufd.c:320-348"),
    Golden(
        "v10.2-caps", "no-debugfs",
        Scenario(V102, (vdev("hostdev0", "0000:73:00.0", 4, bars=(high_bar(),)),)),
        (host_dev("0000:73:00.0", "mlx5_vfio_pci", None),),
        ((H0, "device"),),
        # 3 ranges <= 4, 0x112000000 -> 33 <= 42; only two real holes: OPTIMAL_3
        (Box("legacy:memory", "device", (H0,), ONE_BAR, True, OPTIMAL_3),),
        # QEMU's empty blocked-reasons confirm what the operator stated
        bases=("qemu",), named_facts=((H0, "dma_logging", True, "qemu"),),
        topology="mlx5 VF; no debugfs: facts from [[device_caps]] driver=mlx5_vfio_pci",
        source="as v10.2-fit-k3 with max_ranges=4, log2 42"),
    Golden(
        "v10.2-config-wrong", "no-debugfs",
        Scenario(V102, (vdev("hostdev0", "0000:74:00.0", 4, bars=(high_bar(),),
                             pci=NVME),)),
        (host_dev("0000:74:00.0", "vfio-pci", None),),
        ((H0, "blocked"),), (Box("legacy:memory", "all-dirty", (H0,)),),
        observed=(NO_KERNEL.format("0000:74:00.0"),), bases=("qemu",), blocker_bases=("qemu",),
        named_facts=((H0, "migration", False, "qemu"),),
        caps=({"bdf": "0000:74:00.0", "migration": True, "p2p": True,
               "dma_logging": True},),
        topology="NVMe on plain vfio-pci, but [[device_caps]] wrongly claims migration",
        source="QEMU: migration.c:1084 (-ENOTTY); QEMU's word overrides the config"),
)

CASES = (*BASICS, *MULTI, *VIOMMU_CASES, *RANGES, *OTHER_HOSTS)

# --- live re-evaluation: (before, after, event) -----------------------------------------

_PLUG_MLX5 = vdev("hostdev0", "0000:75:00.0", 4, bars=(high_bar(),))
_PLUG_QAT = vdev("hostdev1", "0000:75:00.1", 5, pci=QAT_VF, hotplugged=True)
HOTPLUG_BEFORE = Golden(
    "v10.2-hotplug", "intel", Scenario(V102, (_PLUG_MLX5,)),
    (host_dev("0000:75:00.0", "mlx5_vfio_pci", MLX5),
     host_dev("0000:75:00.1", "qat_vfio_pci", QAT)),
    ((H0, "device"),), (Box("legacy:memory", "device", (H0,), ONE_BAR, None),))
HOTPLUG_AFTER = replace(
    HOTPLUG_BEFORE, scenario=Scenario(V102, (_PLUG_MLX5, _PLUG_QAT)),
    modes=((H0, "all-dirty"), (H1, "blocked")),
    containers=(Box("legacy:memory", "all-dirty", (H0, H1)),),
    observed=(NO_DIRTY.format("0000:75:00.1"),))

_UNPLUG_MLX5 = vdev("hostdev0", "0000:76:00.0", 4, bars=(high_bar(),))
UNPLUG_BEFORE = Golden(
    "v10.2-unplug", "intel",
    Scenario(V102, (_UNPLUG_MLX5, vdev("hostdev1", "0000:76:00.1", 5, pci=QAT_VF))),
    (host_dev("0000:76:00.0", "mlx5_vfio_pci", MLX5),
     host_dev("0000:76:00.1", "qat_vfio_pci", QAT)),
    ((H0, "all-dirty"), (H1, "blocked")), (Box("legacy:memory", "all-dirty", (H0, H1)),),
    observed=(NO_DIRTY.format("0000:76:00.1"),))
#: vfio_migration_exit -> migrate_del_blocker on unplug (migration.c:1133-1140)
UNPLUG_AFTER = replace(
    UNPLUG_BEFORE, scenario=Scenario(V102, (_UNPLUG_MLX5,)), modes=((H0, "device"),),
    containers=(Box("legacy:memory", "device", (H0,), ONE_BAR, None),), observed=())
DEVICE_DELETED = ("DEVICE_DELETED", {"device": "hostdev1", "path": H1})
LIVE = (HOTPLUG_BEFORE, UNPLUG_BEFORE)
