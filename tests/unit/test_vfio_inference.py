"""QEMU's observed blocked-reasons settle unknown host facts (decisions/vfio/inference.py).

Each row is one rule, with the QEMU code it reads backwards (hw/vfio/migration.c
``vfio_migration_realize`` and hw/vfio/common.c ``vfio_block_multiple_devices_migration``,
QEMU 10.0.2/10.2.2; 8.x/9.x/11.0 per reference §1.3, §3.1, §7). Expected values are
written by hand from that code, never computed by the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from qmpdirty.decisions.vfio.blockers import reconcile
from qmpdirty.decisions.vfio.disagreement import MODE_PREMISE
from qmpdirty.decisions.vfio.evaluate import evaluate
from qmpdirty.decisions.vfio.inference import infer
from qmpdirty.demo.lab.vfio_cases import dev, host_dev, hosts, topo
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostDevice
from qmpdirty.telemetry.message import VmStamp
from qmpdirty.telemetry.render.vfio import blockers_payload, tracking_payload
from qmpdirty.telemetry.topics import Topics

B0, B1 = "0000:3b:00.0", "0000:3b:00.1"
FD = "/objects/iommufd0"
NO_KERNEL = "{}: VFIO migration is not supported in kernel"  # migration.c:1084, -ENOTTY
INIT_FAILED = "{}: Migration couldn't be initialized for VFIO device, err: -95 (Operation not " \
              "supported)"  # migration.c:1086, any other vfio_migration_init error
NO_DIRTY = "{}: VFIO device doesn't support device and IOMMU dirty tracking"  # :1100, 9.1+
NO_DIRTY_V81 = "{}: VFIO device doesn't support device dirty tracking"  # 8.1-9.0 (§3.1 4')
VIOMMU = "{}: Migration is currently not supported with vIOMMU enabled"  # :1116
DISABLED = "{}: Migration is disabled for VFIO device"  # :1076
P2P = "Multiple VFIO devices migration is supported only if all of them support P2P migration"
CATCH_ALL = "VFIO device doesn't support migration"  # 8.0 (§3.1 row 8)
UNREAD = Fact[bool].unknown("debugfs not mounted")


def unread(n: int, driver: str = "mlx5_vfio_pci", *, migration: Fact[bool] = UNREAD,
           p2p: Fact[bool] = UNREAD, dma_logging: Fact[bool] = UNREAD,
           iommu_dirty_tracking: Fact[bool] = UNREAD) -> HostDevice:
    """A device whose debugfs is missing: every migration fact unknown unless given."""
    return replace(host_dev(n, driver), migration=migration, p2p=p2p, pre_copy=UNREAD,
                   dma_logging=dma_logging, iommu_dirty_tracking=iommu_dirty_tracking)


def driver(value: bool) -> Fact[bool]:
    return Fact(value, "driver table: x", "driver")


def read(value: bool) -> Fact[bool]:
    return Fact(value, "debugfs vfio/x/migration/features")


@dataclass(frozen=True)
class Rule:
    """One rule: a VM, what QEMU reports, and the facts it must settle (bdf, fact) ->
    (value, basis, rule id); facts not listed must stay as they were."""

    id: str
    version: str
    devices: tuple[Any, ...]
    host: tuple[HostDevice, ...]
    observed: tuple[str, ...]
    settled: dict[tuple[str, str], tuple[bool, str, str]]
    viommu: bool = False
    notes: tuple[str, ...] = ()  # facts the inference must name as open/contradicted


RULES = [
    # vfio_migration_init() -> -ENOTTY (VFIO_DEVICE_FEATURE_MIGRATION without mig_ops)
    Rule("no-kernel", "10.2", (dev(0),), (unread(0),), (NO_KERNEL.format(B0),),
         {(B0, "migration"): (False, "qemu", "no-kernel")}),
    # any other vfio_migration_init() error: mig_ops but no STOP_COPY (-EOPNOTSUPP)
    Rule("init-failed", "10.2", (dev(0),), (unread(0),), (INIT_FAILED.format(B0),),
         {(B0, "migration"): (False, "qemu", "init-failed")}),
    # the dirty-tracking branch runs after a successful init; legacy: never a dirty HWPT
    Rule("dirty-blocker-legacy", "10.2", (dev(0),), (unread(0),), (NO_DIRTY.format(B0),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (False, "qemu", "no-dirty")}),
    # IOMMUFD 9.1+: ... && !iommu_dirty_tracking -> its HWPT has no dirty flag either
    Rule("dirty-blocker-iommufd", "10.2", (dev(0, iommufd=FD),), (unread(0),),
         (NO_DIRTY.format(B0),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (False, "qemu", "no-dirty"),
          (B0, "iommu_dirty_tracking"): (False, "qemu", "no-dirty-hwpt")}),
    # 8.1-9.0: `if (!vbasedev->dirty_pages_supported)`, older wording (§3.1 4')
    Rule("dirty-blocker-8.2", "8.2", (dev(0, device_dirty_page_tracking=None),),
         (unread(0),), (NO_DIRTY_V81.format(B0),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (False, "qemu", "no-dirty")}),
    # x-device-dirty-page-tracking=off: the blocker says nothing about log_ops
    Rule("dirty-blocker-xdev-off", "10.2", (dev(0, iommufd=FD, device_dirty_page_tracking="off"),),
         (unread(0),), (NO_DIRTY.format(B0),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "iommu_dirty_tracking"): (False, "qemu", "no-dirty-hwpt")}),
    # no blocker, legacy: (dirty_pages_supported && xdev != off) || iommu_dirty_tracking,
    # and the legacy backend never sets iommu_dirty_tracking (reference §1.1)
    Rule("absent-legacy", "10.2", (dev(0),), (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog")}),
    # 9.0 has the IOMMUFD backend but no HWPT dirty tracking (9.1, §7)
    Rule("absent-iommufd-9.0", "9.0", (dev(0, iommufd=FD, device_dirty_page_tracking=None),),
         (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog")}),
    # IOMMUFD 9.1+: the driver cannot DMA-log, so it passed on a dirty HWPT
    Rule("absent-iommufd-driver-no-log", "10.2", (dev(0, iommufd=FD),),
         (unread(0, "qat_vfio_pci", dma_logging=driver(False)),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "iommu_dirty_tracking"): (True, "driver", "passed-other")}),
    # IOMMUFD 9.1+: the host IOMMU was read without dirty tracking, so DMA logging
    Rule("absent-iommufd-host-no-hwpt", "10.2", (dev(0, iommufd=FD),),
         (unread(0, iommu_dirty_tracking=read(False)),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-other")}),
    # both unknown: QEMU only says "one of them"; the default picks the HWPT, named
    Rule("absent-iommufd-either", "10.2", (dev(0, iommufd=FD),), (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "iommu_dirty_tracking"): (True, "assumed", "passed-either")},
         notes=("dma_logging",)),
    Rule("absent-iommufd-xdev-off", "10.2",
         (dev(0, iommufd=FD, device_dirty_page_tracking="off"),), (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "iommu_dirty_tracking"): (True, "qemu", "passed-hwpt")}),
    # a fact read from the host that QEMU contradicts is revised by QEMU's word
    Rule("absent-contradicts-debugfs", "10.2", (dev(0),),
         (unread(0, migration=read(True), dma_logging=read(False)),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog")}),
    # enable-migration=on: vfio_block_migration propagates, realize would have failed
    Rule("on-realized", "10.2", (dev(0, enable_migration="on"),), (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "on-realized")}),
    # enable-migration=off / failover: vfio_migration_init never runs
    Rule("off", "10.2", (dev(0, enable_migration="off"),), (unread(0),),
         (DISABLED.format(B0),), {}),
    Rule("failover", "10.2", (dev(0, failover_pair_id="net0"),), (unread(0),), (), {}),
    Rule("disabled-contradicts-qom", "10.2", (dev(0),), (unread(0),), (DISABLED.format(B0),),
         {}, notes=("enable-migration",)),
    # <= 10.2: the vIOMMU check comes after the dirty-tracking check passed
    Rule("viommu-legacy-10.2", "10.2", (dev(0),), (unread(0),), (VIOMMU.format(B0),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog")}, viommu=True),
    Rule("viommu-absent-10.2", "10.2", (dev(0),), (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog")}, viommu=True,
         notes=("behind_viommu",)),
    # 11.0: `!vfio_device_dirty_pages_disabled(dev) && vfio_viommu_preset(dev)`
    Rule("viommu-11.0-devlog", "11.0", (dev(0, iommufd=FD),), (unread(0),),
         (VIOMMU.format(B0),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "viommu-devlog")}, viommu=True),
    Rule("viommu-11.0-absent", "11.0", (dev(0, iommufd=FD),), (unread(0),), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (False, "qemu", "viommu-no-devlog"),
          (B0, "iommu_dirty_tracking"): (True, "qemu", "viommu-hwpt")}, viommu=True),
    # vfio_block_multiple_devices_migration (8.2+): no blocker with two migratable devices
    Rule("p2p-absent", "10.2", (dev(0), dev(1)), (unread(0), unread(1)), (),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B1, "migration"): (True, "qemu", "init-ok"),
          (B1, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B0, "p2p"): (True, "qemu", "p2p-absent"), (B1, "p2p"): (True, "qemu", "p2p-absent")}),
    Rule("p2p-one", "10.2", (dev(0), dev(1)), (unread(0, p2p=read(True)), unread(1)), (P2P,),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B1, "migration"): (True, "qemu", "init-ok"),
          (B1, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B1, "p2p"): (False, "qemu", "p2p-one")}),
    Rule("p2p-some", "10.2", (dev(0), dev(1)), (unread(0), unread(1)), (P2P,),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B1, "migration"): (True, "qemu", "init-ok"),
          (B1, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B0, "p2p"): (False, "assumed", "p2p-some"), (B1, "p2p"): (False, "assumed", "p2p-some")},
         notes=("p2p",)),
    # realize order: the device blocked for dirty tracking is realized last and never runs
    # the check, so the first device was alone: nothing about P2P (migration.c:1099-1110)
    Rule("p2p-order", "10.2", (dev(0), dev(1)), (unread(0), unread(1, "hisi_acc_vfio_pci")),
         (NO_DIRTY.format(B1),),
         {(B0, "migration"): (True, "qemu", "init-ok"),
          (B0, "dma_logging"): (True, "qemu", "passed-devlog"),
          (B1, "migration"): (True, "qemu", "init-ok"),
          (B1, "dma_logging"): (False, "qemu", "no-dirty")}),
    # 8.0: one catch-all per failed device, naming none
    Rule("8.0-no-catch-all", "8.0", (dev(0, enable_migration=None, x_enable_migration=True),),
         (unread(0),), (), {(B0, "migration"): (True, "qemu", "8.0-catch-all")}),
    Rule("8.0-catch-all", "8.0", (dev(0, enable_migration=None, x_enable_migration=True),),
         (unread(0),), (CATCH_ALL,), {(B0, "migration"): (False, "qemu", "8.0-catch-all")}),
    Rule("8.0-unattributed", "8.0",
         (dev(0, enable_migration=None, x_enable_migration=True),
          dev(1, enable_migration=None, x_enable_migration=True)),
         (unread(0), unread(1)), (CATCH_ALL,), {}, notes=("migration",)),
    # fd passing: QEMU names it VFIO_FD<n>, which QMP does not show: nothing to attach to
    Rule("fd-passed", "10.2", (dev(0, host="ffff:ff:ff.f", iommufd=FD),), (unread(0),),
         ("VFIO_FD3: VFIO migration is not supported in kernel",), {}),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule(rule: Rule) -> None:
    t = topo(rule.version, *rule.devices, viommu=rule.viommu, blocked=rule.observed)
    before = hosts(*rule.host)
    result = infer(t, before)
    got = {(r.bdf, r.fact): (r.value, r.basis, r.rule) for r in result.revisions}
    assert got == rule.settled
    for (bdf, name), (value, basis, _) in rule.settled.items():
        fact: Fact[bool] = getattr(result.host.devices[bdf], name)
        if getattr(before.devices[bdf], name) == read(value):
            assert fact == read(value)  # read and confirmed: stays read
            continue
        assert (fact.value, fact.basis) == (value, basis), (bdf, name, fact)
        assert fact.source.startswith("QEMU"), fact.source
    assert sorted(n.fact for n in result.notes) == sorted(rule.notes)


def test_a_read_fact_that_qemu_confirms_stays_read() -> None:
    """QEMU agrees with debugfs: the fact keeps basis host and its source."""
    h = hosts(unread(0, migration=read(True), dma_logging=read(True)))
    result = infer(topo("10.2", dev(0)), h)
    assert result.host.devices[B0].dma_logging == read(True)


def test_a_driver_fact_that_qemu_confirms_becomes_qemu_and_says_so() -> None:
    h = hosts(unread(0, "hisi_acc_vfio_pci", dma_logging=driver(False)))
    fact = infer(topo("10.2", dev(0), blocked=(NO_DIRTY.format(B0),)), h).host.devices[
        B0].dma_logging
    assert fact.basis == "qemu" and fact.source.endswith("(agrees with driver table: x)")


def test_a_contradicted_fact_names_what_it_overrides() -> None:
    h = hosts(unread(0, migration=read(True), dma_logging=read(False)))
    fact = infer(topo("10.2", dev(0)), h).host.devices[B0].dma_logging
    assert fact.source.endswith("; debugfs vfio/x/migration/features said no, overridden by QEMU")


def test_init_failure_is_predicted_with_qemus_errno() -> None:
    text = INIT_FAILED.format(B0)
    v = evaluate(topo("10.2", dev(0), blocked=(text,)), hosts(unread(0)))
    assert [b.text for b in v.verdict.blockers] == [text]
    assert v.verdict.blockers[0].kind.value == "migration-init-failed"
    assert v.reconciled.agree is True


# --- the whole engine: modes, bases, agree ---------------------------------------------------

STAMP = VmStamp(Topics.create("qmpdirty", "kvm01"), "vm", 1, 0.0)


def test_two_mlx5_vfs_without_debugfs_are_device_logged_as_qemu_says() -> None:
    """The issue's case: unknown facts were assumed "no" and QEMU's empty blocked-reasons
    ignored; now QEMU's word settles them."""
    t = topo("10.2", dev(0), dev(1))
    h = hosts(unread(0), unread(1))
    v = evaluate(t, h)
    tracking, blockers = tracking_payload(STAMP, v), blockers_payload(STAMP, v)
    assert [(d.mode, d.basis) for d in tracking.devices] == [("device", "qemu")] * 2
    assert tracking.complete and blockers.agree is True and blockers.predicted == []
    assert {(f.name, f.device, f.basis) for f in tracking.devices[0].facts} == {
        ("migration", "/machine/peripheral/hostdev0", "qemu"),
        ("dma_logging", "/machine/peripheral/hostdev0", "qemu"),
        ("dma_logging", "/machine/peripheral/hostdev1", "qemu")}


def test_enable_migration_on_hides_dma_logging_and_the_mode_says_assumed() -> None:
    v = evaluate(topo("10.2", dev(0, enable_migration="on")), hosts(unread(0)))
    tracking = tracking_payload(STAMP, v)
    device = tracking.devices[0]
    assert (device.mode, device.basis) == ("all-dirty", "assumed")
    assert "assumes DMA logging (log_ops)=no" in device.basis_reason
    assert not tracking.complete


@pytest.mark.parametrize(("devices", "observed", "agree"), [
    ((), (), None),  # nothing predicted, nothing to compare
    ((), ("The vvfat (rw) format used by node '#block080' does not support live migration",),
     None),  # B6: only unmodelled blockers: no agreement claimed
    ((), (P2P,), False),  # a VFIO blocker without a VFIO device
    ((dev(0),), (), True),  # a VFIO device predicted migratable, and it is
    ((dev(0),), ("The vvfat (rw) format used by node '#block080' does not support live "
                 "migration",), True),  # agreement about the VFIO kinds; vvfat is unmodelled
])
def test_agree_is_claimed_only_about_vfio_kinds(devices: tuple[Any, ...],
                                               observed: tuple[str, ...],
                                               agree: bool | None) -> None:
    v = evaluate(topo("10.2", *devices, blocked=observed), hosts(host_dev(0, "mlx5_vfio_pci")))
    assert v.reconciled.agree is agree


def test_a_hidden_blocker_names_the_migration_mode_premise() -> None:
    """enable-migration=off always raises its blocker in mode normal: if QEMU does not
    report it, no host fact explains that."""
    v = evaluate(topo("10.2", dev(0, enable_migration="off")), hosts(host_dev(0, "mlx5_vfio_pci")))
    assert v.reconciled.agree is False and v.reconciled.unknown_facts == (MODE_PREMISE,)


def test_reconcile_without_observation_compares_nothing() -> None:
    assert reconcile((), None).agree is None


def test_a_decision_is_as_good_as_its_weakest_fact() -> None:
    from qmpdirty.decisions.vfio.basis import Evidence, summary

    read_ = Evidence("migration", True, "host", "debugfs f", "/d0")
    table = Evidence("dma_logging", False, "driver", "driver table: x", "/d0")
    other = Evidence("dma_logging", True, "qemu", "QEMU: y", "/d1")
    assert summary([read_]) == ("host", "migration=yes: debugfs f")
    assert summary([read_, other, table]) == ("driver", "dma_logging of /d0=no: driver table: x")
    assert summary([]) == ("host", "read: QOM properties only")
