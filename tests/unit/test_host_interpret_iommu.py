"""Host interpretation (decisions/vfio/host_caps.py) of the IOMMU: raw sysfs/proc text -> facts.

Table-driven over reference §5.1 (IOMMU dirty tracking): Intel scalable mode, VT-d ECAP,
AMD-Vi EFR, the unit kinds and the address width. The device's own caps (§5.2, §5.3 and
their precedence): test_host_interpret_device_caps.py.
"""

from __future__ import annotations

import pytest

from qmpdirty.decisions.vfio.host_caps import (
    address_width,
    amd_dirty_tracking,
    intel_dirty_tracking,
    interpret_device,
    iommu_kind,
    parse_features,
    parse_hex,
    scalable_mode_from_cmdline,
    scalable_mode_from_kconfig,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import IommuFiles, Text, Unread
from tests.support.raw_devices import BDF, ON, SLADS, SMPWC, SMTS, intel_view, raw_device

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
