"""Host interpretation (decisions/vfio/host_caps.py): raw sysfs/debugfs/proc text -> facts.

Table-driven over reference §5.1 (IOMMU dirty tracking), §5.2 (debugfs features) and
§5.3 (driver table), plus the precedence debugfs > [[device_caps]] > driver table.
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
    address_width,
    amd_dirty_tracking,
    debugfs_caps,
    decide,
    driver_caps,
    intel_dirty_tracking,
    interpret_device,
    interpret_host,
    iommu_kind,
    parse_features,
    parse_hex,
    scalable_mode_from_cmdline,
    scalable_mode_from_kconfig,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import DebugfsView, IommuFiles, RawDevice, Read, Text, Unread

SMTS, SLADS, SMPWC = 1 << 43, 1 << 45, 1 << 48
BDF = "0000:3b:00.1"
ON = Fact(True, "proc cmdline intel_iommu=sm_on")
OFF = Fact(False, "proc cmdline intel_iommu=sm_off")
SM_UNKNOWN = Fact[bool].unknown("scalable mode: cannot read proc cmdline: Permission denied")


def text(value: str, label: str = "sysfs x") -> Text:
    return Text(label, value)


# --- small parsers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("f050da\n", 0xF050DA), ("0x1F\n", 0x1F), ("  d2008c40660462 ", 0xD2008C40660462),
        ("ffffffffffffffff", 2**64 - 1), ("1ffffffffffffffff", None), ("", None), ("\n", None),
        ("0x", None), ("-1", None), ("12g", None), ("1 2", None), ("\ufffd\ufffd", None),
    ],
)
def test_parse_hex(raw: str, value: int | None) -> None:
    assert parse_hex(raw) == value


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("stop-copy\np2p\npre-copy\ndirty-tracking\n",
         {"stop-copy", "p2p", "pre-copy", "dirty-tracking"}),
        ("stop-copy\n", {"stop-copy"}),
        ("", set()),
        ("stop-copy future-feature\n", {"stop-copy", "future-feature"}),
        ("stop-copy\n\x00\x01", None),
        ("STOP-COPY", None),
        ("\ufffd", None),
    ],
)
def test_parse_features(raw: str, words: set[str] | None) -> None:
    assert parse_features(raw) == (None if words is None else frozenset(words))


# --- Intel scalable mode --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro", None),
        ("ro intel_iommu=on", None),
        ("ro intel_iommu=on,sm_on", True),
        ("ro intel_iommu=sm_off", False),
        ("intel_iommu=sm_on intel_iommu=sm_off", False),  # applied in order: the last wins
        ("intel_iommu=sm_off,sm_on", True),
        ('intel_iommu="on,sm_on"', True),
        ("xintel_iommu=sm_on amd_iommu=sm_off", None),
        ("intel_iommu=sm_onx", True),  # intel_iommu_setup() compares by prefix (strncmp)
        ("\ufffd intel_iommu=\ufffd", None),
    ],
)
def test_scalable_mode_from_cmdline(cmdline: str, expected: bool | None) -> None:
    fact = scalable_mode_from_cmdline(text(cmdline, "proc cmdline"))
    if expected is None:
        assert fact is None
    else:
        assert fact is not None and fact.value is expected
        assert fact.source.startswith("proc cmdline intel_iommu=")


def test_unreadable_cmdline_is_unknown_since_it_could_override() -> None:
    fact = scalable_mode_from_cmdline(Unread("proc cmdline", "Permission denied"))
    assert fact == Fact[bool].unknown("scalable mode: cannot read proc cmdline: "
                              "Permission denied")


@pytest.mark.parametrize(
    ("config", "expected", "source"),
    [
        ("CONFIG_INTEL_IOMMU=y\nCONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y\n", True,
         "boot config-6.18 CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y"),
        ("CONFIG_INTEL_IOMMU=y\n# CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON is not set\n",
         False, "boot config-6.18: CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON not set"),
        ("CONFIG_INTEL_IOMMU=y\n", False,
         "boot config-6.18: CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON not set"),
        ("CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=m\n", False,
         "boot config-6.18: CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON not set"),
        ("\x00\x01garbage", None, "unknown: scalable mode: boot config-6.18 is not a kernel "
                                  "config"),
        ("", None, "unknown: scalable mode: boot config-6.18 is not a kernel config"),
    ],
)
def test_scalable_mode_from_kconfig(config: str, expected: bool | None, source: str) -> None:
    fact = scalable_mode_from_kconfig(text(config, "boot config-6.18"))
    assert (fact.value, fact.source) == (expected, source)


def test_unreadable_kconfig_names_what_was_tried() -> None:
    fact = scalable_mode_from_kconfig(Unread("the kernel config", "proc config.gz absent; "
                                             "boot config-6.18 absent"))
    assert fact.value is None
    assert fact.source == ("unknown: scalable mode: no intel_iommu=sm_on|sm_off and cannot read "
                           "the kernel config: proc config.gz absent; boot config-6.18 absent")


# --- Intel VT-d: ECAP bits x scalable mode -------------------------------------------------

ECAP_LABEL = "sysfs class/iommu/dmar0/intel-iommu/ecap"


@pytest.mark.parametrize(
    ("ecap", "sm", "expected", "source_has"),
    [
        (SMTS | SLADS | SMPWC, ON, True, "SMTS+SLADS+SMPWC, scalable mode on (proc cmdline"),
        (SMTS | SLADS | SMPWC | 0xF050DA, ON, True, "scalable mode on"),
        (SMTS | SLADS | SMPWC, OFF, False, "scalable mode off (proc cmdline intel_iommu=sm_off"),
        (SMTS | SLADS | SMPWC, Fact(True, "boot config-6.18 CONFIG_X=y"), True, "config-6.18"),
        (SMTS | SLADS | SMPWC, Fact(False, "boot config-6.18: CONFIG_X not set"), False,
         "scalable mode off"),
        (SMTS | SLADS | SMPWC, SM_UNKNOWN, None, "but scalable mode: cannot read proc cmdline"),
        (SLADS | SMPWC, ON, False, ": no SMTS"),
        (SMTS | SMPWC, ON, False, ": no SLADS"),
        (SMTS | SLADS, ON, False, ": no SMPWC"),
        (SMTS, SM_UNKNOWN, False, ": no SLADS/SMPWC"),  # hardware alone decides: no
        (0xF050DA, OFF, False, ": no SMTS/SLADS/SMPWC"),
        (1 << 44 | 1 << 46 | 1 << 47, ON, False, ": no SMTS/SLADS/SMPWC"),  # neighbours
    ],
)
def test_intel_dirty_tracking(ecap: int, sm: Fact[bool], expected: bool | None,
                              source_has: str) -> None:
    fact = intel_dirty_tracking(text(f"{ecap:x}\n", ECAP_LABEL), sm)
    assert fact.value is expected
    assert source_has in fact.source and ECAP_LABEL in fact.source


@pytest.mark.parametrize("raw", ["", "zz", "0x", "12345678901234567", "\ufffd", "1:2"])
def test_malformed_ecap_is_unknown(raw: str) -> None:
    fact = intel_dirty_tracking(text(raw, ECAP_LABEL), ON)
    assert fact.value is None and fact.source.startswith(f"unknown: {ECAP_LABEL} is not a hex")


def test_unreadable_ecap_is_unknown() -> None:
    fact = intel_dirty_tracking(Unread(ECAP_LABEL, "is a directory"), ON)
    assert fact == Fact[bool].unknown(f"cannot read {ECAP_LABEL}: is a directory")


# --- AMD-Vi: EFR HDSup and HATS --------------------------------------------------------------

FEATURES_LABEL = "sysfs class/iommu/ivhd0/amd-iommu/features"
HDSUP = 1 << 52


@pytest.mark.parametrize(
    ("raw", "expected", "source_has"),
    [
        (f"{HDSUP | 2 << 10:x}:0\n", True, "HDSup (EFR bit 52); IVHD HATDis is not in sysfs"),
        (f"{HDSUP:x}:53\n", True, "HDSup"),
        (f"{HDSUP | 0x25BF732FA2295AFE:x}\n", True, "HDSup"),  # older kernels: EFR alone
        (f"{HDSUP | 3 << 10:x}:0\n", False, "EFR HATS=3, host translation disabled"),
        (f"{3 << 10:x}:0\n", False, "HATS=3"),
        (f"{1 << 10:x}:0\n", False, "no HDSup"),
        (f"{1 << 49:x}:0\n", False, "no HDSup"),  # HASup alone is not dirty tracking
        ("0:0\n", False, "no HDSup"),
        ("", None, "is not efr:efr2 hex"),
        ("zz:0", None, "is not efr:efr2 hex"),
        (f"{HDSUP:x}:zz", None, "is not efr:efr2 hex"),
        ("1:2:3", None, "is not efr:efr2 hex"),
        (":", None, "is not efr:efr2 hex"),
        ("\ufffd\ufffd", None, "is not efr:efr2 hex"),
    ],
)
def test_amd_dirty_tracking(raw: str, expected: bool | None, source_has: str) -> None:
    fact = amd_dirty_tracking(text(raw, FEATURES_LABEL))
    assert fact.value is expected
    assert source_has in fact.source and FEATURES_LABEL in fact.source


@pytest.mark.parametrize(
    ("unit", "entries", "kind"),
    [
        ("dmar0", {"intel-iommu", "devices", "power"}, "intel"),
        ("ivhd1", {"amd-iommu", "devices"}, "amd"),
        ("smmu3.0x0000000009050000", {"devices"}, "arm-smmu-v3"),
        ("dmar0", set(), "other"),  # unreadable unit directory: no register group seen
        ("viommu0", {"devices"}, "other"),
    ],
)
def test_iommu_kind(unit: str, entries: set[str], kind: str) -> None:
    assert iommu_kind(unit, entries) == kind


def raw_device(address: str = BDF, *, driver: Read | None = None,
               debugfs: DebugfsView | None = None, iommu: IommuFiles | None = None,
               mdev: bool = False, present: bool = True) -> RawDevice:
    return RawDevice(
        address=address, mdev=mdev, present=present,
        driver=driver or Text(f"sysfs bus/pci/devices/{address}/driver", "vfio-pci"),
        debugfs=debugfs or DebugfsView("/sys/kernel/debug", "no-migration"),
        iommu=iommu if iommu is not None or mdev else intel_view("dmar0", SMTS | SLADS | SMPWC),
    )


def intel_view(unit: str, ecap: int, cap: str = "d2008c402f0462") -> IommuFiles:
    base = f"sysfs class/iommu/{unit}/intel-iommu"
    return IommuFiles(Text(f"sysfs bus/pci/devices/{BDF}/iommu", unit),
                      frozenset({"intel-iommu", "devices"}),
                      Text(f"{base}/ecap", f"{ecap:x}"), Text(f"{base}/cap", cap),
                      Unread(f"sysfs class/iommu/{unit}/amd-iommu/features", "no such file",
                             absent=True))


def test_arm_smmu_and_other_units_are_unknown_with_the_reason() -> None:
    arm = IommuFiles(Text("sysfs l", "smmu3.0x09050000"))
    other = IommuFiles(Text("sysfs l", "viommu0"), frozenset({"devices"}))
    smmu = interpret_device(raw_device(iommu=arm), ON, []).iommu_dirty_tracking
    assert smmu.value is None and "ARM SMMUv3 has no sysfs attribute for IDR0" in smmu.source
    virt = interpret_device(raw_device(iommu=other), ON, []).iommu_dirty_tracking
    assert virt == Fact[bool].unknown("viommu0: not an Intel VT-d or AMD-Vi unit")


def test_no_iommu_link_is_unknown() -> None:
    view = IommuFiles(Unread(f"sysfs bus/pci/devices/{BDF}/iommu", "no such link", absent=True))
    device = interpret_device(raw_device(iommu=view), ON, [])
    assert device.iommu_unit.value is None and device.iommu_dirty_tracking.value is None
    assert device.iommu_unit.source == (f"unknown: sysfs bus/pci/devices/{BDF}/iommu absent "
                                        "(IOMMU off, or the device is not behind one)")


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (["d2008c402f0462"], 48),  # MGAW field 0x2f
        (["d2008c40660462"], 39),  # field 0x26
        (["d2008c402f0462", "d2008c40660462"], 39),  # the smallest
        (["zz", "d2008c402f0462"], 48),
        (["zz"], None),
        ([], None),
    ],
)
def test_address_width_is_the_smallest_mgaw(caps: list[str], expected: int | None) -> None:
    raws = [raw_device(f"0000:3b:00.{i}", iommu=intel_view(f"dmar{i}", SMTS, cap))
            for i, cap in enumerate(caps)]
    width = address_width([*raws, None])
    assert width.value == expected
    if expected is None and not caps:
        assert "no asked device is behind an Intel VT-d unit" in width.source


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
