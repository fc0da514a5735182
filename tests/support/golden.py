"""The VFIO golden cases: a VM as QEMU shows it, a host, and what QEMU does with them.

Every expected value here is written **by hand from QEMU's source** (10.0.2 and
10.2.2 read in full; 8.x/9.x/11.0 wording from the patch mails quoted in
reference §3.1/§1.3/§7), never computed by qmpdirty: the blocker texts are the
``blocked-reasons`` the stand-in reports (``Golden.presented``), so a prediction
that matches them is checked against QEMU, not against itself. The cases are in
``golden_v8`` (QEMU 8.0-9.1) and ``golden_v10`` (10.0-11.0, other hosts); the table
in docs/golden-cases.md is rendered from them (``markdown``).

**The real QEMU underneath** (``QEMU_ARGS``; QEMU 10.0.2, ``-S``): ``info mtree -f
-o`` of address space ``memory`` is, verbatim::

  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  0000000000100000-000000001fffffff (prio 0, ram): pc.ram @0000000000100000
  00000000fec00000-..fec00fff i/o ioapic; fed00000-..fed003ff i/o hpet;
  00000000fee00000-..feefffff i/o apic-msi
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000010fffffff (prio 0, ram): dimm0mem

plus the BARs a case injects. Hand arithmetic (QEMU 10.0.2 hw/vfio/common.c
``vfio_dirty_tracking_update_range`` 850-890, ``..._dma_logging_start_create`` 964;
host page 4 KiB; every section is page aligned, so ``iova = start`` and
``end = end``):

* 32-bit bucket (sections with end <= 0xffffffff): min = 0 (pc.ram), max =
  0xffffffff (pc.bios) -> ``R32 = (0x0, 0x100000000)``. QEMU 11.0 skips read-only
  sections (pc.rom, both pc.bios): max = 0x1fffffff -> ``R32_V11 = (0x0, 0x20000000)``.
* 64-bit bucket: dimm0mem alone -> ``R64 = (0x100000000, 0x10000000)``.
* pci64 bucket (8.2+): a vfio-pci BAR of *this* container at iova >= 4 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qmpdirty.demo.lab.fakehost import (
    ALL_FEATURES,
    ECAP_DIRTY,
    ECAP_LEGACY,
    AmdUnit,
    FakeDevice,
    FakeHost,
    IntelUnit,
    amd_features,
)
from qmpdirty.demo.lab.vfio_scenario import PCIE0, Bar, FabDevice, PciId, Scenario

Span = tuple[int, int]

#: The real QEMU the stand-in forwards to; the arithmetic above depends on it.
QEMU_ARGS = (
    "-S", "-machine", "q35", "-m", "512,slots=2,maxmem=2G", "-accel", "tcg",
    "-nodefaults", "-display", "none",
    "-object", "memory-backend-ram,id=dimm0mem,size=256M",
    "-device", "pc-dimm,id=dimm0,memdev=dimm0mem",
    "-device", "pxb-pcie,id=pxb1,bus_nr=32,bypass_iommu=true",
    "-device", "pcie-root-port,id=rpx,bus=pxb1,chassis=1",
)
#: The root port behind the bypassing pxb (a real bus of that QEMU).
BYPASS_BUS = "/machine/peripheral/rpx/rpx"

# --- blocker texts (QEMU 10.0.2 hw/vfio/migration.c vfio_migration_realize unless noted) --

DISABLED = "{}: Migration is disabled for VFIO device"  # migration.c:1076 (8.1+)
NO_KERNEL = "{}: VFIO migration is not supported in kernel"  # migration.c:1084 (8.1+)
NO_DIRTY = "{}: VFIO device doesn't support device and IOMMU dirty tracking"  # :1100 (9.1+)
NO_DIRTY_V81 = "{}: VFIO device doesn't support device dirty tracking"  # 8.1-9.0, §3.1 4'
VIOMMU = "{}: Migration is currently not supported with vIOMMU enabled"  # :1116 (8.1+)
#: common.c:129 vfio_block_multiple_devices_migration (8.2+)
P2P = "Multiple VFIO devices migration is supported only if all of them support P2P migration"
MULTI_V80 = "Migration is currently not supported with multiple VFIO devices"  # 8.0-8.1, 5'
VIOMMU_V80 = "Migration is currently not supported with vIOMMU enabled"  # 8.0 global, 6'
LEGACY_V80 = "VFIO device doesn't support migration"  # 8.0 catch-all, §3.1 row 8

# --- ranges (see the module docstring) -----------------------------------------------------

R32: Span = (0x0, 0x1_0000_0000)
R32_V11: Span = (0x0, 0x2000_0000)
R64: Span = (0x1_0000_0000, 0x1000_0000)
HIGH = 0x3800_0000_0000  # where OVMF's dynamic MMIO window puts 64-bit BARs
BAR32M = 0x200_0000


def high_bar(offset: int = 0, index: int = 0) -> Bar:
    """A 32 MiB 64-bit prefetchable BAR at HIGH + offset."""
    return Bar(index, HIGH + offset, BAR32M)


LOW_BAR = Bar(2, 0xC000_0000, 0x100_0000, mem64=False, prefetch=False)  # 16 MiB < 4 GiB

# --- host facts (debugfs vfio/<bdf>/migration/features, reference §5.2-5.3) ---------------

MLX5 = ALL_FEATURES  # stop-copy p2p pre-copy dirty-tracking
MLX5_NO_P2P = ("stop-copy", "pre-copy", "dirty-tracking")
PDS = ("stop-copy", "p2p", "dirty-tracking")
QAT = ("stop-copy", "p2p", "pre-copy")  # no log_ops
HISI = ("stop-copy", "pre-copy")  # no P2P, no log_ops

#: Host groups: one fake host tree (and one daemon) each; devices come from the cases.
HOSTS: dict[str, FakeHost] = {
    "intel": FakeHost(iommus=(IntelUnit("dmar0", ECAP_DIRTY), IntelUnit("dmar1", ECAP_LEGACY)),
                      cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on"),
    "intel-sm-off": FakeHost(iommus=(IntelUnit("dmar0", ECAP_DIRTY),),
                             cmdline="BOOT_IMAGE=/vmlinuz ro intel_iommu=on,sm_off"),
    "amd": FakeHost(iommus=(AmdUnit("ivhd0", amd_features(hdsup=True)),)),
    "no-debugfs": FakeHost(iommus=(IntelUnit("dmar0", ECAP_DIRTY),), debugfs="unmounted"),
    # the common production host (reference §9): no debugfs features, nothing stated in
    # [[device_caps]]: driver table and QEMU's blocked-reasons are the evidence
    "bare": FakeHost(iommus=(IntelUnit("dmar0", ECAP_DIRTY), IntelUnit("dmar1", ECAP_LEGACY)),
                     cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on",
                     debugfs="unmounted"),
    # ... and no kernel config either: whether VT-d runs in scalable mode (so whether
    # dmar0 can track dirty pages) is unknown; the kernel's default config has it on
    "bare-sm-unknown": FakeHost(iommus=(IntelUnit("dmar0", ECAP_DIRTY),
                                        IntelUnit("dmar1", ECAP_LEGACY)),
                                cmdline="BOOT_IMAGE=/vmlinuz ro intel_iommu=on",
                                kernel_config=None, debugfs="unmounted"),
}
#: ``[[device_caps]]`` of a whole host group (per-BDF entries live in the cases).
GROUP_CAPS: dict[str, tuple[dict[str, object], ...]] = {
    "no-debugfs": ({"driver": "mlx5_vfio_pci", "migration": True, "p2p": True,
                    "pre_copy": True, "dma_logging": True, "max_ranges": 4,
                    "max_log2_address_space": 42},),
}


def host_dev(bdf: str, driver: str, features: tuple[str, ...] | None,
             iommu: str = "dmar0") -> FakeDevice:
    return FakeDevice(bdf, driver, features, iommu)


def vdev(ident: str | None, bdf: str | None, slot: int, fn: int = 0, *,
         pci: PciId | None = None, **kw: object) -> FabDevice:
    """A vfio device at pcie.0 ``slot.fn`` (``bus=`` to place it elsewhere)."""
    extra = {"pci_id": pci} if pci is not None else {}
    return FabDevice(ident, bdf, slot << 3 | fn, **extra, **kw)  # type: ignore[arg-type]


def path(ident: str) -> str:
    return f"/machine/peripheral/{ident}"


# --- engine discrepancies found by the golden cases ----------------------------------------

#: Aspect of a case -> why qmpdirty gets it wrong (the test of that aspect is a strict
#: xfail for the cases listing the key in ``Golden.bugs``; fix the engine, drop the key).
ENGINE_BUGS: dict[str, str] = {
}

# --- the case ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """An expected container: engine, members, DMA-logging ranges, fit, optimal plan."""

    id: str
    mode: str
    devices: tuple[str, ...]
    ranges: tuple[Span, ...] = ()
    fits: bool | None = None
    optimal: tuple[Span, ...] | None = None


@dataclass(frozen=True)
class Golden:
    """One golden case. ``observed`` is what QEMU raises (the stand-in reports it);
    ``predicted`` differs only in a disagreement case."""

    name: str
    host: str
    scenario: Scenario
    facts: tuple[FakeDevice, ...]
    modes: tuple[tuple[str, str], ...]  # (qom path, mode) in realize order
    containers: tuple[Box, ...]
    observed: tuple[str, ...] = ()
    predicted: tuple[str, ...] | None = None
    caps: tuple[dict[str, object], ...] = ()
    topology: str = ""
    source: str = ""
    bugs: tuple[str, ...] = ()  # keys of ENGINE_BUGS this case exposes (strict xfail)
    #: basis of each device's mode (in ``modes`` order) and of each predicted blocker;
    #: empty: every one "host" (all facts read from debugfs, sysfs and QOM)
    bases: tuple[str, ...] = ()
    blocker_bases: tuple[str, ...] = ()
    #: (qom path, fact, value, basis) of the facts the case is about (tracking ``facts``)
    named_facts: tuple[tuple[str, str, object, str], ...] = ()
    complete: bool = True  # false: a mode rests on a fact nobody could know
    #: (qom path or None, fact) that ``blockers.unknown_facts`` names (disagreements)
    unknown: tuple[tuple[str | None, str], ...] = ()

    @property
    def presented(self) -> Scenario:
        return replace(self.scenario, blocked_reasons=self.observed)

    @property
    def expected_predicted(self) -> tuple[str, ...]:
        return self.observed if self.predicted is None else self.predicted

    @property
    def unexpected(self) -> tuple[str, ...]:
        return tuple(t for t in self.observed if t not in self.expected_predicted)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(t for t in self.expected_predicted if t not in self.observed)

    @property
    def version(self) -> str:
        return ".".join(map(str, self.scenario.version[:2]))

    @property
    def expected_bases(self) -> tuple[str, ...]:
        return self.bases or ("host",) * len(self.modes)

    @property
    def expected_blocker_bases(self) -> tuple[str, ...]:
        return self.blocker_bases or ("host",) * len(self.expected_predicted)


def on_pcie0(*devices: FabDevice) -> bool:
    return all(d.bus == PCIE0 for d in devices)


def all_cases() -> tuple[Golden, ...]:
    from tests.support import golden_inference, golden_v8, golden_v10

    cases = (*golden_v8.CASES, *golden_v10.CASES, *golden_inference.CASES)
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "golden case names must be unique"
    bdfs = [f.address for c in cases for f in c.facts]
    assert len(set(bdfs)) == len(bdfs), "host BDFs must be unique across cases"
    return cases


# --- docs/golden-cases.md ----------------------------------------------------------------------


def _spans(spans: tuple[Span, ...] | None) -> str:
    if not spans:
        return "-"
    return " ".join(f"({i:#x}, {n:#x})" for i, n in spans)


def _row(c: Golden) -> str:
    modes = ", ".join(f"{p.rsplit('/', 1)[-1]}={m} ({b})"
                      for (p, m), b in zip(c.modes, c.expected_bases, strict=True))
    boxes = "<br>".join(
        f"`{b.id}` {b.mode}: {_spans(b.ranges)}"
        + (f" fits={b.fits}" if b.ranges else "")
        + (f" optimal={_spans(b.optimal)}" if b.optimal else "") for b in c.containers)
    blockers = "<br>".join(f"`{t}`" for t in c.observed) or "none"
    if c.predicted is not None:
        blockers += "<br>(predicted: " + (", ".join(f"`{t}`" for t in c.predicted)
                                          or "none") + ")"
    return (f"| {c.name} | {c.version} | {c.topology} | {c.host} | {modes} | {blockers} | "
            f"{boxes} | {c.source} |")


def markdown(cases: tuple[Golden, ...]) -> str:
    """The table of docs/golden-cases.md."""
    head = ("| case | QEMU | topology | host | modes (basis) | blocked-reasons | containers: "
            "ranges (iova, length) | source |\n|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(_row(c) for c in cases)]) + "\n"
