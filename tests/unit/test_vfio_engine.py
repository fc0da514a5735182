"""Golden cases of the VFIO engine: modes, containers and QEMU's exact blocker texts.

Expected values are written by hand from QEMU's source (hw/vfio/migration.c
vfio_migration_realize, hw/vfio/common.c vfio_block_multiple_devices_migration and
vfio_devices_all_device_dirty_tracking, QEMU 10.0.2/10.2.2; older wording per
reference §3.1), never computed by the code under test.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from qmpdirty.decisions.vfio.blockers import is_vfio_blocker, reconcile
from qmpdirty.decisions.vfio.tracking import TrackingVerdict, decide
from qmpdirty.demo.lab.vfio_cases import dev, host_dev, hosts, topo
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology

B0 = "0000:3b:00.0"
B1 = "0000:3b:00.1"
P2P = "Multiple VFIO devices migration is supported only if all of them support P2P migration"


def run(t: VmTopology, h: HostFacts) -> TrackingVerdict:
    return decide(t, h)


def modes(v: TrackingVerdict) -> list[str]:
    return [d.mode for d in v.devices]


def texts(v: TrackingVerdict) -> list[str]:
    return [b.text for b in v.blockers]


@pytest.mark.parametrize(("version", "expected"), [
    ("8.1", f"{B0}: VFIO migration is not supported in kernel"),
    ("9.1", f"{B0}: VFIO migration is not supported in kernel"),
    ("10.2", f"{B0}: VFIO migration is not supported in kernel"),
    ("11.0", f"{B0}: VFIO migration is not supported in kernel"),
])
def test_plain_vfio_pci_has_no_migration_driver(version: str, expected: str) -> None:
    v = run(topo(version, dev(0)), hosts(host_dev(0, "vfio-pci")))
    assert texts(v) == [expected] and modes(v) == ["blocked"]
    assert v.blockers[0].kind.value == "no-migration-driver"
    assert "variant driver" in v.blockers[0].remedy


def test_qemu_8_0_catch_all_and_x_enable_migration() -> None:
    v = run(topo("8.0", dev(0, enable_migration=None, x_enable_migration=False)),
            hosts(host_dev(0, "mlx5_vfio_pci")))
    assert texts(v) == ["VFIO device doesn't support migration"]
    ok = run(topo("8.0", dev(0, enable_migration=None, x_enable_migration=True)),
             hosts(host_dev(0, "mlx5_vfio_pci")))
    assert texts(ok) == [] and modes(ok) == ["device"]


def test_enable_migration_off() -> None:
    v = run(topo("10.0", dev(0, enable_migration="off")), hosts(host_dev(0, "mlx5_vfio_pci")))
    assert texts(v) == [f"{B0}: Migration is disabled for VFIO device"]


@pytest.mark.parametrize("version", ["8.1", "8.2", "9.0", "9.1", "10.0", "10.2", "11.0"])
def test_dma_logging_device_alone_is_tracked_by_the_device(version: str) -> None:
    v = run(topo(version, dev(0)), hosts(host_dev(0, "mlx5_vfio_pci")))
    assert texts(v) == [] and modes(v) == ["device"]
    assert [c.engine for c in v.containers] == ["device"]
    assert v.containers[0].id == "legacy:memory"


@pytest.mark.parametrize(("version", "text"), [
    ("8.2", f"{B0}: VFIO device doesn't support device dirty tracking"),
    ("9.0", f"{B0}: VFIO device doesn't support device dirty tracking"),
    ("9.1", f"{B0}: VFIO device doesn't support device and IOMMU dirty tracking"),
    ("10.2", f"{B0}: VFIO device doesn't support device and IOMMU dirty tracking"),
])
def test_no_dma_logging_legacy_auto_is_blocked(version: str, text: str) -> None:
    v = run(topo(version, dev(0)), hosts(host_dev(0, "qat_vfio_pci")))
    assert texts(v) == [text] and modes(v) == ["blocked"]


def test_no_dma_logging_legacy_on_is_all_dirty() -> None:
    v = run(topo("10.2", dev(0, enable_migration="on")), hosts(host_dev(0, "qat_vfio_pci")))
    assert texts(v) == [] and modes(v) == ["all-dirty"]
    assert v.containers[0].engine == "all-dirty"


@pytest.mark.parametrize(("version", "mode", "text"), [
    ("9.0", "blocked", f"{B0}: VFIO device doesn't support device dirty tracking"),
    ("9.1", "iommu", None),
    ("10.2", "iommu", None),
])
def test_iommufd_with_a_dirty_capable_host_iommu(version: str, mode: str, text: str | None
                                                 ) -> None:
    d = dev(0, iommufd="/objects/iommufd0")
    v = run(topo(version, d), hosts(host_dev(0, "qat_vfio_pci", iommu_dirty=True)))
    assert modes(v) == [mode] and texts(v) == ([text] if text else [])
    if not text:
        assert v.containers[0].id == "iommufd:/objects/iommufd0"
        assert v.containers[0].engine == "iommu"


@pytest.mark.parametrize(("version", "mode"), [("9.1", "all-dirty"), ("10.0", "unsafe"),
                                                ("10.2", "unsafe")])
def test_iommufd_without_dirty_hwpt_forced_on(version: str, mode: str) -> None:
    """enable-migration=on, no DMA logging, no dirty HWPT: <=9.2 QEMU marks sections
    dirty itself; since 10.0 nothing reports dirty pages (reference §1.5)."""
    d = dev(0, iommufd="/objects/iommufd0", enable_migration="on")
    v = run(topo(version, d), hosts(host_dev(0, "qat_vfio_pci", iommu_dirty=False)))
    assert texts(v) == [] and modes(v) == [mode]


def test_two_p2p_devices_migrate_together_from_8_2() -> None:
    h = hosts(host_dev(0, "mlx5_vfio_pci"), host_dev(1, "mlx5_vfio_pci"))
    assert texts(run(topo("8.2", dev(0), dev(1)), h)) == []
    assert texts(run(topo("8.1", dev(0), dev(1)), h)) == [
        "Migration is currently not supported with multiple VFIO devices"]


def test_realize_order_decides_the_p2p_blocker() -> None:
    """hisi (no P2P, no DMA logging) is blocked for dirty tracking and skips the P2P
    check, but keeps `migration` and so counts for devices realized after it."""
    h = hosts(host_dev(0, "mlx5_vfio_pci"), host_dev(1, "hisi_acc_vfio_pci"))
    hisi_blocker = f"{B1}: VFIO device doesn't support device and IOMMU dirty tracking"
    mlx5_first = run(topo("10.2", dev(0, realize=0), dev(1, realize=1)), h)
    assert texts(mlx5_first) == [hisi_blocker]
    hisi_first = run(topo("10.2", dev(0, realize=1), dev(1, realize=0)), h)
    assert texts(hisi_first) == [hisi_blocker, P2P]
    assert hisi_first.blockers[1].device is None  # global
    # hisi is still attached to the shared type1 container and cannot DMA-log, so
    # vfio_devices_all_device_dirty_tracking is false: mlx5 would be all-dirty too
    assert modes(hisi_first) == ["blocked", "all-dirty"]  # in realize order: hisi, mlx5


def test_p2p_with_enable_migration_on_is_a_realize_error() -> None:
    h = hosts(host_dev(0, "mlx5_vfio_pci"), host_dev(1, "hisi_acc_vfio_pci"))
    v = run(topo("10.2", dev(0, enable_migration="on"), dev(1, enable_migration="on")), h)
    assert v.realize_errors == (P2P,)


@pytest.mark.parametrize(("version", "expected"), [
    ("8.0", ["Migration is currently not supported with vIOMMU enabled"]),
    ("8.1", [f"{B0}: Migration is currently not supported with vIOMMU enabled"]),
    ("10.2", [f"{B0}: Migration is currently not supported with vIOMMU enabled"]),
    ("11.0", [f"{B0}: Migration is currently not supported with vIOMMU enabled"]),
])
def test_dma_logging_device_behind_a_viommu(version: str, expected: list[str]) -> None:
    d = dev(0, enable_migration=None, x_enable_migration=True) if version == "8.0" else dev(0)
    v = run(topo(version, d, viommu=True), hosts(host_dev(0, "mlx5_vfio_pci")))
    assert texts(v) == expected
    assert v.containers[0].id == "legacy:viommu:/machine/peripheral/hostdev0"


def test_qemu_11_allows_viommu_for_iommu_tracked_devices() -> None:
    d = dev(0, iommufd="/objects/iommufd0")
    h = hosts(host_dev(0, "qat_vfio_pci", iommu_dirty=True))
    assert texts(run(topo("11.0", d, viommu=True), h)) == []
    assert modes(run(topo("11.0", d, viommu=True), h)) == ["iommu"]
    assert texts(run(topo("10.2", d, viommu=True), h)) == [
        f"{B0}: Migration is currently not supported with vIOMMU enabled"]


def test_bus_that_bypasses_the_viommu() -> None:
    v = run(topo("10.2", dev(0, root_bus_bypass_iommu=True), viommu=True),
            hosts(host_dev(0, "mlx5_vfio_pci")))
    assert texts(v) == [] and v.containers[0].id == "legacy:memory"


def test_failover_primary_has_no_blocker_but_turns_the_container_all_dirty() -> None:
    h = hosts(host_dev(0, "mlx5_vfio_pci"), host_dev(1, "mlx5_vfio_pci"))
    v = run(topo("10.2", dev(0), dev(1, failover_pair_id="net0")), h)
    assert texts(v) == [] and modes(v) == ["all-dirty", "failover"]
    assert v.containers[0].engine == "all-dirty"


def test_non_pci_vfio_is_never_migratable_and_user_pci_is_unsafe() -> None:
    v = run(topo("10.2", dev(0, qom_type="vfio-ap", host=None)), HostFacts())
    assert texts(v) == ["non-migratable device: vfio-ap"] and modes(v) == ["blocked"]
    u = run(topo("10.2", dev(0, qom_type="vfio-user-pci", host=None)), HostFacts())
    assert texts(u) == [] and modes(u) == ["unsafe"]


def test_one_device_without_logging_turns_the_whole_container_all_dirty() -> None:
    h = hosts(host_dev(0, "mlx5_vfio_pci"), host_dev(1, "qat_vfio_pci"))
    v = run(topo("10.2", dev(0), dev(1, enable_migration="on")), h)
    assert texts(v) == [] and modes(v) == ["all-dirty", "all-dirty"]


def test_iommufd_container_leaves_a_logging_device_on_a_plain_hwpt_untracked() -> None:
    h = hosts(host_dev(0, "mlx5_vfio_pci", iommu_dirty=False),
              host_dev(1, "qat_vfio_pci", iommu_dirty=True))
    fd = "/objects/iommufd0"
    v = run(topo("10.2", dev(0, iommufd=fd), dev(1, iommufd=fd)), h)
    assert texts(v) == [] and modes(v) == ["unsafe", "iommu"]


def test_qemu_11_large_memory_type1_is_a_realize_error() -> None:
    big = 9 * 2**40
    v = run(topo("11.0", dev(0, enable_migration="on"), ram=big), hosts(host_dev(0,
                                                                               "qat_vfio_pci")))
    assert v.realize_errors == (f"{B0}: Migration is currently not supported with large memory "
                                "VM due to dirty tracking limitation in backend",)
    assert texts(run(topo("10.2", dev(0, enable_migration="on"), ram=big),
                     hosts(host_dev(0, "qat_vfio_pci")))) == []


def test_unknown_host_facts_are_assumed_and_said() -> None:
    h = hosts(replace(host_dev(0, "mlx5_vfio_pci"),
                      dma_logging=Fact(None, "unknown: debugfs not mounted")))
    v = run(topo("10.2", dev(0)), h)
    assert modes(v) == ["blocked"]
    assert any("assumes DMA logging (log_ops)=no (unknown: debugfs not mounted)" in r
               for r in v.devices[0].reasons)


def test_reconcile_against_observed() -> None:
    v = run(topo("10.2", dev(0)), hosts(host_dev(0, "vfio-pci")))
    predicted = v.blockers
    same = reconcile(predicted, (f"{B0}: VFIO migration is not supported in kernel",))
    assert same.agree and not same.migratable and not same.missing
    vvfat = "The vvfat (rw) format used by node '#block123' does not support live migration"
    other = reconcile(predicted, (f"{B0}: VFIO migration is not supported in kernel", vvfat))
    assert other.agree and other.unmodelled == (vvfat,)
    wrong = reconcile(predicted, (P2P,))
    assert not wrong.agree and wrong.unexpected == (P2P,)
    assert wrong.missing == (f"{B0}: VFIO migration is not supported in kernel",)
    assert reconcile((), ()).agree and reconcile((), ()).migratable
    assert not is_vfio_blocker(vvfat) and is_vfio_blocker(P2P)


def test_fd_passed_device_is_named_by_its_fd_which_qmp_does_not_show() -> None:
    d = dev(0, host="ffff:ff:ff.f", iommufd="/objects/iommufd0")
    v = run(topo("10.2", d), HostFacts())
    # no host facts for an fd: assumed a migration driver without DMA logging or dirty HWPT
    assert texts(v) == ["VFIO_FD*: VFIO device doesn't support device and IOMMU dirty tracking"]
    observed = (texts(v)[0].replace("VFIO_FD*", "VFIO_FD17"),)
    assert reconcile(v.blockers, observed).agree
