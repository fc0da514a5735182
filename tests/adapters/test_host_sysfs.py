"""The host probe (host/sysfs.py reads, host_caps interprets, wired as
``daemon.vfio_verdict.host_facts``) end to end over fake sysfs/debugfs/proc/boot trees.

Trees come from ``qmpdirty/demo/lab/fakehost.py`` and are laid out like the kernel's, with
relative symlinks. Unreadable files use chmod 000 where that works and a file/directory
swap as root, where it does not (``make_unreadable``).
"""

from __future__ import annotations

import errno
import gzip
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.config.sections import DeviceCapsConfig
from qmpdirty.daemon.vfio_verdict import host_facts
from qmpdirty.demo.lab.fakehost import (
    ALL_FEATURES,
    ECAP_LEGACY,
    KCONFIG_SM_OFF,
    NO_FEATURES_FILE,
    NOT_IN_DEBUGFS,
    AmdUnit,
    ArmUnit,
    DebugfsKind,
    FakeDevice,
    FakeHost,
    FakeTree,
    IntelUnit,
    amd_features,
    build,
    intel_cap,
    make_unreadable,
    overwrite,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostFacts
from qmpdirty.host.sysfs import canonical_address

VF = "0000:3b:00.1"
MDEV = "5d8f0a4e-0000-4000-8000-000000000001"
ECAP = "sysfs class/iommu/dmar0/intel-iommu/ecap"
UNREADABLE = ("Permission denied", "is a directory", "Not a directory")


def probe(tree: FakeTree, *bdfs: str, caps: list[DeviceCapsConfig] | None = None) -> HostFacts:
    return host_facts(tree.host_config, caps or [], bdfs)


def one(tmp_path: Path, device: FakeDevice, host: FakeHost | None = None) -> FakeTree:
    """A host (default: one Intel unit, sm on by kernel config) with just ``device``."""
    return build(tmp_path, replace(host or FakeHost(), devices=(device,)))


# --- a realistic host ---------------------------------------------------------------------------


def test_intel_host_with_an_mlx5_vf(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES))
    device = probe(tree, VF).devices[VF]
    assert device.driver == Fact("mlx5_vfio_pci", f"sysfs bus/pci/devices/{VF}/driver")
    features = f"debugfs vfio/{VF}/migration/features"
    assert [device.migration, device.p2p, device.pre_copy, device.dma_logging] == [
        Fact(True, features)] * 4
    assert device.iommu_unit == Fact("dmar0", f"sysfs bus/pci/devices/{VF}/iommu")
    assert device.iommu_dirty_tracking == Fact(True, (
        f"{ECAP} SMTS+SLADS+SMPWC, scalable mode on (boot config-6.18.0-qmpdirty "
        "CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y)"))
    assert not device.mdev


def test_mixed_host(tmp_path: Path) -> None:
    """Several units and drivers at once; facts keyed by the address as asked."""
    tree = build(tmp_path, FakeHost(
        iommus=(IntelUnit("dmar0"), IntelUnit("dmar1", ECAP_LEGACY, intel_cap(39)), AmdUnit(),
                ArmUnit("smmu3.0x09050000")),
        devices=(FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES),
                 FakeDevice("0000:3b:00.2", "qat_vfio_pci", migration=NO_FEATURES_FILE,
                            iommu="dmar1"),
                 FakeDevice("0000:5e:00.0", "vfio-pci", iommu="ivhd0"),
                 FakeDevice("0000:7f:00.1", "pds_vfio_pci", migration=NOT_IN_DEBUGFS,
                            iommu="smmu3.0x09050000"),
                 FakeDevice(MDEV, "mtty", migration=ALL_FEATURES))))
    facts = probe(tree, VF, "3B:00.2", "0000:5e:00.0", "0000:7f:00.1", MDEV)
    qat = facts.devices["3B:00.2"]
    assert qat.bdf == "0000:3b:00.2" and qat.migration.value is True
    assert qat.p2p.source.startswith(
        "driver table: qat_vfio_pci")  # features file absent: the table speaks
    assert qat.iommu_dirty_tracking.value is False
    assert facts.devices["0000:5e:00.0"].migration.value is False
    assert facts.devices["0000:5e:00.0"].iommu_dirty_tracking.value is True
    pds = facts.devices["0000:7f:00.1"]
    assert pds.migration.value is None
    assert "debugfs has no vfio/0000:7f:00.1" in pds.migration.source
    assert "ARM SMMUv3" in pds.iommu_dirty_tracking.source
    mdev = facts.devices[MDEV]
    assert mdev.mdev and mdev.driver.value == "mtty" and mdev.dma_logging.value is True
    assert facts.address_width == Fact(39, "sysfs class/iommu/dmar1/intel-iommu/cap MGAW")


def test_amd_host(tmp_path: Path) -> None:
    for features, expected in [(amd_features(), True), (amd_features(hats=3), False),
                               (amd_features(hdsup=False), False),
                               (amd_features(efr2=None), True)]:
        tree = build(tmp_path / features, FakeHost(
            iommus=(AmdUnit("ivhd0", features),),
            devices=(FakeDevice(VF, "vfio-pci", iommu="ivhd0"),)))
        facts = probe(tree, VF)
        assert facts.devices[VF].iommu_dirty_tracking.value is expected, features
        assert facts.address_width.value is None


# --- debugfs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("debugfs", "reason"),
    [
        ("absent", "debugfs not mounted at {root} (mount it or state the facts in "
                   "[[device_caps]])"),
        ("unmounted", "debugfs not mounted at {root} (mount it or state the facts in "
                      "[[device_caps]])"),
        ("no-vfio", "debugfs at {root} has no vfio/ (kernel < 6.8 or CONFIG_VFIO_DEBUGFS off)"),
    ],
)
def test_debugfs_missing(tmp_path: Path, debugfs: DebugfsKind, reason: str) -> None:
    tree = one(tmp_path, FakeDevice(VF, "qat_vfio_pci", migration=ALL_FEATURES),
               FakeHost(debugfs=debugfs))
    device = probe(tree, VF).devices[VF]
    assert device.migration.source == "driver table: qat_vfio_pci sets STOP_COPY|P2P|PRE_COPY, " \
                                      "no log_ops (Linux 7.1.8 drivers/vfio/pci/qat/, " \
                                      "reference §5.3)"
    assert device.migration.basis == "driver"
    mlx5 = one(tmp_path / "mlx5", FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES),
               FakeHost(debugfs=debugfs))
    unknown = probe(mlx5, VF).devices[VF].migration
    assert unknown.value is None
    assert unknown.source.startswith("unknown: " + reason.format(root=mlx5.debugfs))


def test_debugfs_unreadable(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES))
    make_unreadable(tree.debugfs)
    source = probe(tree, VF).devices[VF].migration.source
    assert source.startswith(f"unknown: debugfs at {tree.debugfs} not readable: ")
    assert any(why in source for why in UNREADABLE), source


def test_features_file_absent_before_6_18(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "mlx5_vfio_pci", migration=NO_FEATURES_FILE))
    device = probe(tree, VF).devices[VF]
    assert device.migration == Fact(True, f"debugfs vfio/{VF}/migration exists (mig_ops)")
    assert device.dma_logging.source.startswith(
        f"unknown: debugfs vfio/{VF}/migration/features absent (kernel < 6.18)")


def test_features_file_unreadable(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES))
    how = make_unreadable(tree.debugfs / "vfio" / VF / "migration" / "features")
    source = probe(tree, VF).devices[VF].dma_logging.source  # mlx5: per device, no table value
    assert source.startswith(f"unknown: cannot read debugfs vfio/{VF}/migration/features: "), how
    assert any(why in source for why in UNREADABLE), source


def test_no_migration_dir_means_no_mig_ops(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "mlx5_vfio_pci", migration=None))
    device = probe(tree, VF).devices[VF]
    assert device.migration == Fact(False, f"debugfs vfio/{VF} has no migration/ "
                                           "(driver without mig_ops)")


# --- [[device_caps]] ------------------------------------------------------------------------------


def test_config_fills_gaps_and_disagreement_is_noted(tmp_path: Path) -> None:
    tree = build(tmp_path, FakeHost(devices=(
        FakeDevice(VF, "mlx5_vfio_pci", migration=NO_FEATURES_FILE),
        FakeDevice("0000:3b:00.2", "mlx5_vfio_pci", migration=("stop-copy",)))))
    caps = [DeviceCapsConfig(driver="mlx5_vfio_pci", migration=False, p2p=True, pre_copy=True,
                             dma_logging=True, max_ranges=256, max_log2_address_space=42),
            DeviceCapsConfig(bdf=VF, dma_logging=False, max_ranges=8)]
    facts = probe(tree, VF, "0000:3b:00.2", caps=caps)
    vf = facts.devices[VF]
    assert vf.migration.value is True  # read from debugfs, config said false
    assert vf.migration.source == (f"debugfs vfio/{VF}/migration exists (mig_ops); config "
                                   "[[device_caps]] driver=mlx5_vfio_pci said false, overridden")
    assert vf.p2p == Fact(True, "config [[device_caps]] driver=mlx5_vfio_pci", "driver")
    assert vf.dma_logging.value is False
    assert (vf.max_ranges, vf.max_log2_address_space) == (8, 42)
    other = facts.devices["0000:3b:00.2"]
    assert other.dma_logging.value is False and "said true, overridden" in other.dma_logging.source
    assert other.max_ranges == 256


# --- Intel scalable mode: cmdline, then kernel config --------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected", "source_has"),
    [
        (FakeHost(cmdline="ro intel_iommu=on,sm_on", kernel_config=KCONFIG_SM_OFF), True,
         "proc cmdline intel_iommu=on,sm_on"),
        (FakeHost(cmdline="ro intel_iommu=sm_off", kernel_config=None), False,
         "proc cmdline intel_iommu=sm_off"),
        (FakeHost(cmdline="ro", kernel_config=KCONFIG_SM_OFF), False,
         "boot config-6.18.0-qmpdirty: CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON not set"),
        (FakeHost(cmdline="ro", kernel_config=None), None,
         "cannot read the kernel config: proc config.gz absent; boot config-6.18.0-qmpdirty "
         "absent"),
        (FakeHost(cmdline="ro", kernel_config="CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y\n",
                  kernel_config_at="proc"), True,
         "proc config.gz CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y"),
    ],
)
def test_scalable_mode_sources(tmp_path: Path, host: FakeHost, expected: bool | None,
                               source_has: str) -> None:
    fact = probe(one(tmp_path, FakeDevice(VF, "vfio-pci"), host), VF).devices[VF]
    assert fact.iommu_dirty_tracking.value is expected
    assert source_has in fact.iommu_dirty_tracking.source, fact.iommu_dirty_tracking.source


def test_kernel_config_is_not_read_when_the_cmdline_decides(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "vfio-pci"), FakeHost(cmdline="intel_iommu=sm_on"))
    make_unreadable(tree.boot / "config-6.18.0-qmpdirty")
    assert probe(tree, VF).devices[VF].iommu_dirty_tracking.value is True


def test_bad_release_and_bad_gzip(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "vfio-pci"))
    (tree.proc / "sys/kernel/osrelease").write_text("../../etc/passwd\n")
    (tree.proc / "config.gz").write_bytes(b"not gzip")
    source = probe(tree, VF).devices[VF].iommu_dirty_tracking.source
    assert "proc config.gz: not gzip" in source
    assert "not a kernel release: '../../etc/passwd'" in source
    (tree.proc / "config.gz").write_bytes(gzip.compress(b"CONFIG_X=y\n")[:-6])
    assert "truncated" in probe(tree, VF).devices[VF].iommu_dirty_tracking.source


# --- sysfs oddities ---------------------------------------------------------------------


def test_unreadable_ecap(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "vfio-pci"))
    make_unreadable(tree.sysfs / "devices/virtual/iommu/dmar0/intel-iommu/ecap")
    source = probe(tree, VF).devices[VF].iommu_dirty_tracking.source
    assert source.startswith(f"unknown: cannot read {ECAP}: ")
    assert any(why in source for why in UNREADABLE), source


def test_malformed_ecap_and_cap(tmp_path: Path) -> None:
    tree = build(tmp_path, FakeHost(iommus=(IntelUnit(ecap="not hex\n", cap="\n"),),
                                    devices=(FakeDevice(VF, "vfio-pci"),)))
    facts = probe(tree, VF)
    assert facts.devices[VF].iommu_dirty_tracking.source == (
        f"unknown: {ECAP} is not a hex value: 'not hex'")
    assert facts.address_width.value is None


def test_absent_device_unbound_driver_and_no_iommu(tmp_path: Path) -> None:
    tree = build(tmp_path, FakeHost(devices=(FakeDevice(VF, driver=None, iommu=None),)))
    facts = probe(tree, VF, "0000:99:00.0", "not-an-address")
    assert facts.devices[VF].driver.source == (
        f"unknown: no driver bound (sysfs bus/pci/devices/{VF}/driver absent)")
    assert facts.devices[VF].iommu_unit.source == (
        f"unknown: sysfs bus/pci/devices/{VF}/iommu absent (IOMMU off, or the device is not "
        "behind one)")
    assert facts.devices["0000:99:00.0"].migration.source == (
        "unknown: no 0000:99:00.0 under sysfs bus/pci/devices")
    assert facts.devices["not-an-address"].driver.value is None


def test_driver_that_is_not_a_symlink(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, driver=None))
    (tree.sysfs / "devices/pci0000:3b" / VF / "driver").write_text("vfio-pci\n")
    assert probe(tree, VF).devices[VF].driver.source == (
        f"unknown: cannot read sysfs bus/pci/devices/{VF}/driver: not a symlink")


def test_a_fifo_does_not_hang_the_probe(tmp_path: Path) -> None:
    tree = one(tmp_path, FakeDevice(VF, "vfio-pci"))
    ecap = tree.sysfs / "devices/virtual/iommu/dmar0/intel-iommu/ecap"
    ecap.unlink()
    os.mkfifo(ecap)
    result: list[HostFacts] = []
    worker = threading.Thread(target=lambda: result.append(probe(tree, VF)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result and result[0].devices[VF].iommu_dirty_tracking.value is None


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("0000:3b:00.1", ("0000:3b:00.1", False)),
        ("3b:00.1", ("0000:3b:00.1", False)),
        ("0000:3B:1F.7", ("0000:3b:1f.7", False)),
        ("1:2:3.4", ("0001:02:03.4", False)),
        (MDEV.upper(), (MDEV, True)),
        ("0000:3b:20.0", None),  # slot is 5 bits
        ("0000:3b:00.8", None),
        ("../../etc", None),
        ("", None),
        ("ffff:ff:ff.f", None),  # QEMU's placeholder for fd-passed devices
    ],
)
def test_canonical_address(asked: str, expected: tuple[str, bool] | None) -> None:
    assert canonical_address(asked) == expected


# --- fuzz: whatever the files hold, host_facts answers ------------------------------------

FUZZ_HOST = FakeHost(
    iommus=(IntelUnit("dmar0"), AmdUnit("ivhd0")),
    devices=(FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES),
             FakeDevice("0000:3b:00.2", "vfio-pci", migration=NO_FEATURES_FILE, iommu="ivhd0"),
             FakeDevice(MDEV, "mtty", migration=ALL_FEATURES)),
    kernel_config_at="proc",
)
CONTENTS = st.one_of(
    st.binary(max_size=64),
    st.text(alphabet="0123456789abcdefx:\n ", max_size=40).map(str.encode),
    st.sampled_from([b"", b"\n", b"\xff\xfe", b"stop-copy\np2p\n", b"intel_iommu=sm_on",
                     gzip.compress(b"\x00\x01"), b"6.18.0-qmpdirty\n"]),
)


def test_random_bytes_in_every_file_never_raise(tmp_path: Path) -> None:
    tree = build(tmp_path, FUZZ_HOST)
    (tree.boot / "config-6.18.0-qmpdirty").write_text("CONFIG_X=y\n")  # both configs exist
    files = tree.files()
    asked = [VF, "0000:3b:00.2", MDEV, "junk"]
    caps = [DeviceCapsConfig(driver="mlx5_vfio_pci", p2p=True)]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(CONTENTS, min_size=len(files), max_size=len(files)))
    def never_raises(data: list[bytes]) -> None:
        overwrite(files, data)
        facts = host_facts(tree.host_config, caps, asked)
        assert list(facts.devices) == asked
        for device in facts.devices.values():
            for fact in (device.driver, device.migration, device.p2p, device.pre_copy,
                         device.dma_logging, device.iommu_unit, device.iommu_dirty_tracking):
                assert fact.known or fact.source.startswith("unknown: ")

    never_raises()


def test_debugfs_of_root_only_as_a_normal_user_sees_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """/sys/kernel/debug is mode 0700: listing it fails with EACCES for a non-root daemon.
    (Simulated: these tests run as root in CI, where modes do not stop reads.)"""
    tree = one(tmp_path, FakeDevice(VF, "mlx5_vfio_pci", migration=ALL_FEATURES))
    real_listdir = os.listdir

    def listdir(path: str | os.PathLike[str]) -> list[str]:
        if Path(path) == tree.debugfs:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    assert probe(tree, VF).devices[VF].migration.source == (
        f"unknown: debugfs at {tree.debugfs} not readable: Permission denied (run as root or "
        "state the facts in [[device_caps]]); mlx5_vfio_pci: mig_ops only on a VF whose "
        "firmware has the migration, migration_multi_load and migration_tracking_state caps; "
        "state it in [[device_caps]]")
