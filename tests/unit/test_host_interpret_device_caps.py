"""Host interpretation (decisions/vfio/host_caps.py) of a device's caps: debugfs, the driver
table and [[device_caps]] -> facts.

Table-driven over reference §5.2 (debugfs features) and §5.3 (driver table), plus the
precedence debugfs > [[device_caps]] > driver table. The IOMMU (§5.1):
test_host_interpret_iommu.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from qmpdirty.config.sections import DeviceCapsConfig
from qmpdirty.decisions.vfio import host_caps as interpret
from qmpdirty.decisions.vfio.host_caps import (
    DRIVER_TABLE,
    Caps,
    debugfs_caps,
    decide,
    driver_caps,
    interpret_device,
    interpret_host,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import DebugfsView, RawDevice, Text, Unread
from tests.support.raw_devices import BDF, ON, raw_device

# --- debugfs states (reference §5.2) -----------------------------------------------------------

FEATURES = f"debugfs vfio/{BDF}/migration/features"


def caps_values(caps: Caps) -> tuple[bool | None, ...]:
    return (caps.migration.value, caps.p2p.value, caps.pre_copy.value, caps.dma_logging.value)


@pytest.mark.parametrize(
    ("view", "values", "source_has"),
    [
        (DebugfsView("/dbg", "migration", features=Text(FEATURES, "stop-copy\np2p\npre-copy\n"
                                                        "dirty-tracking\n")),
         (True, True, True, True), FEATURES),
        (DebugfsView("/dbg", "migration", features=Text(FEATURES, "stop-copy\npre-copy\n")),
         (True, False, True, False), FEATURES),
        (DebugfsView("/dbg", "migration", features=Text(FEATURES, "")),
         (False, False, False, False), FEATURES),
        (DebugfsView("/dbg", "no-migration"), (False,) * 4,
         f"debugfs vfio/{BDF} has no migration/ (driver without mig_ops)"),
        (DebugfsView("/dbg", "migration", features=Unread(FEATURES, "no such file", absent=True)),
         (True, None, None, None), f"unknown: {FEATURES} absent (kernel < 6.18)"),
        (DebugfsView("/dbg", "migration", features=Unread(FEATURES, "is a directory")),
         (True, None, None, None), f"unknown: cannot read {FEATURES}: is a directory"),
        (DebugfsView("/dbg", "migration", features=Text(FEATURES, "\x00\x7f")),
         (True, None, None, None), "is not a feature list"),
        (DebugfsView("/dbg", "unmounted"), (None,) * 4,
         "unknown: debugfs not mounted at /dbg (mount it or state the facts in [[device_caps]])"),
        (DebugfsView("/dbg", "unreadable", "Permission denied"), (None,) * 4,
         "unknown: debugfs at /dbg not readable: Permission denied (run as root"),
        (DebugfsView("/dbg", "no-vfio"), (None,) * 4,
         "unknown: debugfs at /dbg has no vfio/ (kernel < 6.8 or CONFIG_VFIO_DEBUGFS off)"),
        (DebugfsView("/dbg", "no-device"), (None,) * 4, f"unknown: debugfs has no vfio/{BDF}"),
    ],
)
def test_debugfs_caps(view: DebugfsView, values: tuple[bool | None, ...],
                      source_has: str) -> None:
    caps = debugfs_caps(BDF, view)
    assert caps_values(caps) == values
    assert source_has in caps.dma_logging.source


def test_migration_dir_alone_means_mig_ops() -> None:
    view = DebugfsView("/dbg", "migration", features=None)
    assert debugfs_caps(BDF, view).migration == Fact(
        True, f"debugfs vfio/{BDF}/migration exists (mig_ops)")


# --- the driver table (reference §5.3) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "values"),
    [
        ("vfio-pci", (False, False, False, False)),
        ("nvgrace_gpu_vfio_pci", (False, False, False, False)),
        ("ism_vfio_pci", (False, False, False, False)),
        ("mlx5_vfio_pci", (None, True, True, None)),
        ("pds_vfio_pci", (None, True, False, True)),
        ("hisi_acc_vfio_pci", (None, False, True, False)),
        ("virtio_vfio_pci", (None, True, True, False)),
        ("qat_vfio_pci", (True, True, True, False)),
        ("xe-vfio-pci", (None, True, False, False)),
        ("mtty", (True, True, True, True)),
        ("nvme", (None, None, None, None)),
    ],
)
def test_driver_table(driver: str, values: tuple[bool | None, ...]) -> None:
    caps = driver_caps(Fact(driver, "sysfs driver"))
    assert caps_values(caps) == values
    for fact in (caps.migration, caps.p2p, caps.pre_copy, caps.dma_logging):
        if fact.value is not None:
            assert fact.source.startswith(f"driver table: {driver} ")
            assert fact.source.endswith(", reference §5.3)") and "Linux 7.1.8" in fact.source
            assert fact.basis == "driver"
        else:
            assert fact.source.endswith("state it in [[device_caps]]"), fact.source


def test_mlx5_says_it_depends_on_firmware() -> None:
    caps = driver_caps(Fact("mlx5_vfio_pci", "sysfs driver"))
    assert caps.dma_logging.source == (
        "unknown: mlx5_vfio_pci: log_ops only with the adv_virtualization firmware cap "
        "(mlx5vf_cmd_set_migratable); state it in [[device_caps]]")
    assert caps.migration.source.startswith("unknown: mlx5_vfio_pci: mig_ops only on a VF ")
    assert caps.p2p == Fact(True, "driver table: mlx5_vfio_pci sets STOP_COPY|P2P|PRE_COPY, "
                            "log_ops per device (Linux 7.1.8 drivers/vfio/pci/mlx5/, "
                            "reference §5.3)", "driver")


def test_the_table_has_every_driver_of_the_reference() -> None:
    """Reference §5.3 (Linux 7.1.8) and §9: hisi, ism, mlx5, nvgrace-gpu, pds, qat,
    virtio, xe, plus plain vfio-pci and the mtty sample."""
    assert set(DRIVER_TABLE) == {
        "vfio-pci", "mlx5_vfio_pci", "pds_vfio_pci", "hisi_acc_vfio_pci", "virtio_vfio_pci",
        "qat_vfio_pci", "xe-vfio-pci", "nvgrace_gpu_vfio_pci", "ism_vfio_pci", "mtty"}


def test_every_table_driver_is_a_real_sysfs_name() -> None:
    # KBUILD_MODNAME turns dashes into underscores, except the literal names (§5.3).
    literal = {"vfio-pci", "xe-vfio-pci"}
    assert all("-" not in name or name in literal for name in DRIVER_TABLE)


# --- precedence: debugfs > [[device_caps]] bdf > driver > driver table -------------------------

MIGRATABLE = DebugfsView("/dbg", "migration", features=Text(FEATURES, "stop-copy\np2p\n"))
NO_DEBUGFS = DebugfsView("/dbg", "unmounted")


def mlx5(view: DebugfsView = NO_DEBUGFS) -> RawDevice:
    return raw_device(driver=Text(f"sysfs bus/pci/devices/{BDF}/driver", "mlx5_vfio_pci"),
                      debugfs=view)


def test_decide_takes_the_first_known_and_names_disagreement() -> None:
    read, table = Fact(True, "debugfs f"), Fact(False, "driver table: x")
    stated = [Fact(False, "config a"), Fact(True, "config b")]
    assert decide(read, stated, table) == Fact(
        True, "debugfs f; config a said false, overridden; driver table: x said false, overridden")
    assert decide(Fact[bool].unknown("r"), [], Fact[bool].unknown("r")) == Fact[bool].unknown("r")
    assert decide(Fact[bool].unknown("r"), [], table) == table


def test_bdf_entry_beats_driver_entry_and_fills_unknowns() -> None:
    caps = [DeviceCapsConfig(driver="mlx5_vfio_pci", migration=True, p2p=True, pre_copy=True,
                             dma_logging=True, max_ranges=256, max_log2_address_space=42),
            DeviceCapsConfig(bdf=BDF, dma_logging=False, max_ranges=8)]
    device = interpret_device(mlx5(), ON, caps)
    # what the operator states is known driver behaviour: basis "driver"
    assert device.migration == Fact(True, "config [[device_caps]] driver=mlx5_vfio_pci",
                                    "driver")
    assert device.dma_logging == Fact(False, f"config [[device_caps]] bdf={BDF}; "
                                             "config [[device_caps]] driver=mlx5_vfio_pci said "
                                             "true, overridden", "driver")
    assert (device.max_ranges, device.max_log2_address_space) == (8, 42)


def test_debugfs_beats_config_and_the_disagreement_is_recorded() -> None:
    caps = [DeviceCapsConfig(bdf=BDF, p2p=False, pre_copy=True)]
    device = interpret_device(mlx5(MIGRATABLE), ON, caps)
    assert device.p2p == Fact(True, FEATURES + f"; config [[device_caps]] bdf={BDF} said false, "
                                               "overridden")
    assert device.pre_copy == Fact(False, FEATURES + f"; config [[device_caps]] bdf={BDF} said "
                                                     "true, overridden; driver table: "
                                                     "mlx5_vfio_pci sets STOP_COPY|P2P|PRE_COPY, "
                                                     "log_ops per device (Linux 7.1.8 "
                                                     "drivers/vfio/pci/mlx5/, reference §5.3) "
                                                     "said true, overridden")
    assert device.migration == Fact(True, FEATURES)  # agreement is not noted


def test_config_beats_the_driver_table() -> None:
    vfio_pci = raw_device(debugfs=NO_DEBUGFS)
    device = interpret_device(vfio_pci, ON, [DeviceCapsConfig(driver="vfio-pci", migration=True)])
    assert device.migration.value is True
    assert device.migration.source.startswith("config [[device_caps]] driver=vfio-pci; "
                                              "driver table: vfio-pci has no mig_ops")


def test_unknown_everywhere_keeps_both_reasons() -> None:
    device = interpret_device(mlx5(), ON, [])
    assert device.dma_logging.source == (
        "unknown: debugfs not mounted at /dbg (mount it or state the facts in [[device_caps]]); "
        "mlx5_vfio_pci: log_ops only with the adv_virtualization firmware cap "
        "(mlx5vf_cmd_set_migratable); state it in [[device_caps]]")


def test_limits_come_only_from_config() -> None:
    assert interpret_device(mlx5(MIGRATABLE), ON, []).max_ranges is None
    caps = [DeviceCapsConfig(bdf="0000:3b:00.2", max_ranges=4)]  # another device
    assert interpret_device(mlx5(MIGRATABLE), ON, caps).max_ranges is None


def test_mdev_has_no_iommu_dirty_tracking() -> None:
    uuid = "5d8f0a4e-0000-4000-8000-000000000001"
    device = interpret_device(raw_device(uuid, mdev=True), ON, [])
    assert device.mdev and device.iommu_dirty_tracking.value is False
    assert device.iommu_unit.value is None


def test_host_keys_devices_as_asked_and_reports_non_addresses() -> None:
    facts = interpret_host({"3b:00.1": mlx5(), "bogus": None}, ON, [])
    assert facts.devices["3b:00.1"].bdf == BDF
    assert facts.devices["bogus"].migration == Fact[bool].unknown(
        "'bogus' is not a PCI address or an mdev UUID")
    assert facts.address_width == Fact(48, "sysfs class/iommu/dmar0/intel-iommu/cap MGAW")


def test_absent_device_is_unknown_throughout() -> None:
    device = interpret_device(raw_device(present=False), ON,
                              [DeviceCapsConfig(bdf=BDF, migration=True)])
    reason = f"unknown: no {BDF} under sysfs bus/pci/devices"
    assert device.driver.source == device.migration.source == reason
    assert device.iommu_dirty_tracking.source == reason


# --- the module stays pure ------------------------------------------------------------------------


def test_interpret_imports_no_io() -> None:
    tree = ast.parse(Path(interpret.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    forbidden = {"os", "pathlib", "io", "shutil", "glob", "gzip", "zlib", "asyncio", "logging",
                 "time", "subprocess", "socket"}
    assert not imported & forbidden
