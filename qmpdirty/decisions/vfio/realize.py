"""Replay of QEMU's per-device migration decision at realize time (pure core).

Stage: decisions. QEMU decides migratability device by device, in realize order
(``vfio_pci_realize`` -> ``vfio_migration_realize``, hw/vfio/migration.c), and
some outcomes depend on that order: the multiple-devices P2P check
(``vfio_block_multiple_devices_migration``, hw/vfio/common.c) counts every
device realized so far whose ``migration`` is set - including devices that later
took a per-device blocker, because under ``enable-migration=auto``
``vfio_block_migration`` succeeds and ``vfio_migration_deinit`` is not called -
while a device that jumps to ``add_blocker`` before the check never runs it.
``replay`` reproduces that order. Unknown host facts become stated assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qmpdirty.decisions.vfio.blocker_texts import (
    REMEDIES,
    Blocker,
    BlockerKind,
    blocker,
    global_viommu,
    multiple_devices,
    non_migratable,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostDevice, HostFacts
from qmpdirty.facts.qemu import (
    ENABLE_MIGRATION,
    IOMMUFD_DIRTY,
    LARGE_MEMORY_BLOCKER,
    P2P_MULTI_DEVICE,
    VIOMMU_RELAXED,
    QemuVersion,
    since,
)
from qmpdirty.facts.topology import VfioDevice, VmTopology

#: type1 bitmap limit: DIRTY_BITMAP_SIZE_MAX (256 MiB of bits) x 4 KiB pages = 8 TiB.
TYPE1_MAX_TRACKED_BYTES = 256 * 2**20 * 8 * 4096


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What realize left behind for one device, as QEMU's fields would hold it."""

    device: VfioDevice
    host: HostDevice | None
    has_migration: bool  # vbasedev->migration != NULL
    dma_logging: bool  # dirty_pages_supported && x-device-dirty-page-tracking != off
    iommu_dirty: bool  # iommu_dirty_tracking (IOMMUFD HWPT with the dirty flag)
    behind_viommu: bool
    blocker: Blocker | None = None
    realize_error: str | None = None  # enable-migration=on turns a blocker into this
    special: str | None = None  # "failover", "non-migratable", "vfio-user"
    reasons: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()


@dataclass
class _Replay:
    version: QemuVersion
    topology: VmTopology
    host: HostFacts
    states: list[DeviceState] = field(default_factory=list)
    global_blockers: list[Blocker] = field(default_factory=list)


def _assume(fact: Fact[bool] | None, default: bool, what: str, notes: list[str]) -> bool:
    """A known fact's value, else ``default`` with a note saying the decision assumed it."""
    if fact is not None and fact.value is not None:
        return fact.value
    why = fact.source if fact is not None else "unknown: no host facts for this device"
    notes.append(f"assumes {what}={'yes' if default else 'no'} ({why})")
    return default


def behind_viommu(device: VfioDevice, topology: VmTopology, notes: list[str]) -> bool:
    """``vfio_viommu_preset``: the device's address space is not system memory, i.e. a
    vIOMMU exists and the host bridge of its root bus does not bypass it
    (``pci_bus_bypass_iommu``)."""
    if not topology.viommus:
        return False
    if device.root_bus_bypass_iommu is None:
        notes.append("assumes the device is behind the vIOMMU (its root bus is unknown)")
        return True
    return not device.root_bus_bypass_iommu


def replay(topology: VmTopology, host: HostFacts) -> tuple[list[DeviceState], list[Blocker]]:
    """Every VFIO device's realize outcome, in realize order, plus the global blockers."""
    run = _Replay(topology.basics.version, topology, host)
    for device in sorted(topology.devices, key=lambda d: d.realize_index):
        run.states.append(_realize(run, device))
    return run.states, run.global_blockers


def _realize(run: _Replay, d: VfioDevice) -> DeviceState:
    notes: list[str] = []
    hd = run.host.device(d.bdf)
    viommu = behind_viommu(d, run.topology, notes)
    base = DeviceState(d, hd, False, False, False, viommu)
    if d.qom_type in ("vfio-ap", "vfio-ccw"):
        return _non_migratable(run, base)
    if d.qom_type == "vfio-user-pci":
        return _with(base, special="vfio-user", reasons=(
            "vfio-user-pci: QEMU has no migration support for it and registers no blocker "
            "(hw/vfio-user/pci.c, 10.1+): its state would not be migrated",))
    if d.failover_pair_id:
        return _with(base, special="failover", reasons=(
            f"failover primary of {d.failover_pair_id}: vfio_pci_realize skips "
            "vfio_migration_realize; it is unplugged for migration, no blocker",))
    if not since(run.version, ENABLE_MIGRATION):
        return _realize_8_0(run, base, notes)
    return _realize_current(run, base, notes)


def _with(state: DeviceState, **changes: object) -> DeviceState:
    """``replace``, except that ``notes`` are split: what was assumed about an unknown
    fact goes to ``assumptions`` (it makes the answer incomplete), the rest to reasons."""
    notes = changes.pop("assumptions", None)
    if isinstance(notes, tuple):
        assumed = tuple(n for n in notes if n.startswith("assumes "))
        informational = tuple(n for n in notes if not n.startswith("assumes "))
        reasons = changes.get("reasons", state.reasons)
        changes["reasons"] = (*reasons, *informational)  # type: ignore[misc]
        changes["assumptions"] = assumed
    return replace(state, **changes)  # type: ignore[arg-type]


def _non_migratable(run: _Replay, base: DeviceState) -> DeviceState:
    name = base.device.qom_type  # idstr: vmsd name (plus the qdev path on buses that have one)
    b = Blocker(non_migratable(name), BlockerKind.NON_MIGRATABLE, base.device.qom_path,
                REMEDIES[BlockerKind.NON_MIGRATABLE],
                f"{name}: vmsd.unmigratable (qemu_savevm_non_migratable_list)")
    return _with(base, blocker=b, special="non-migratable",
                 reasons=(f"{name} is marked unmigratable (vmstate .unmigratable = 1)",))


def _init_outcome(d: VfioDevice, hd: HostDevice | None, notes: list[str]) -> BlockerKind | None:
    """``vfio_migration_init``: None when it succeeds, else the blocker kind it leads to."""
    migration = _assume(hd.migration if hd else None, True, "migration driver (mig_ops)", notes)
    if not migration:
        return BlockerKind.NO_KERNEL_SUPPORT  # -ENOTTY: no mig_ops
    return None


def _realize_current(run: _Replay, base: DeviceState, notes: list[str]) -> DeviceState:
    """QEMU 8.1 and newer (``enable-migration``)."""
    v, d, hd = run.version, base.device, base.host
    name, path = d.vbasedev_name, d.qom_path
    enable = d.enable_migration or "auto"
    if enable == "off":
        b = blocker(v, BlockerKind.DISABLED, path, name, rule="enable-migration=off")
        return _finish(base, b, enable, notes, ("enable-migration=off",))
    failed = _init_outcome(d, hd, notes)
    if failed is not None:
        b = blocker(v, failed, path, name, rule="vfio_migration_init: "
                    "VFIO_DEVICE_FEATURE_MIGRATION returned -ENOTTY (driver without mig_ops)")
        return _finish(base, b, enable, notes, ("no migration driver",))
    devlog = _assume(hd.dma_logging if hd else None, False, "DMA logging (log_ops)", notes)
    if d.device_dirty_page_tracking == "off":
        devlog = False
        notes.append("x-device-dirty-page-tracking=off: DMA logging not used")
    iommu = False
    if since(v, IOMMUFD_DIRTY) and d.iommufd:
        iommu = _assume(hd.iommu_dirty_tracking if hd else None, False,
                        "host IOMMU dirty tracking", notes) and not (hd and hd.mdev)
    state = _with(base, has_migration=True, dma_logging=devlog, iommu_dirty=iommu)
    if not devlog and not iommu:
        rule = "no DMA logging and no IOMMUFD dirty HWPT (vfio_migration_realize)"
        if enable == "auto":
            b = blocker(v, BlockerKind.NO_DIRTY_TRACKING, path, name, rule=rule)
            return _finish(state, b, enable, notes, (rule,))
        notes.append(f"enable-migration=on: QEMU only warns ({rule})")
        large = _large_memory(run, state, notes)
        if large is not None:
            return _finish(state, large, enable, notes, ("guest RAM exceeds the type1 bitmap",))
    p2p_error = _multiple_devices_check(run, state, notes)
    if p2p_error is not None:
        return _with(state, realize_error=p2p_error, reasons=(p2p_error,),
                     assumptions=tuple(notes))
    uses_device_logging = devlog
    if state.behind_viommu and (not since(v, VIOMMU_RELAXED) or uses_device_logging):
        b = blocker(v, BlockerKind.VIOMMU, path, name, rule="vfio_viommu_preset: the "
                    "device's address space is not system memory")
        return _finish(state, b, enable, notes, ("behind a vIOMMU",))
    return _with(state, assumptions=tuple(notes))


def _finish(state: DeviceState, b: Blocker, enable: str, notes: list[str],
            why: tuple[str, ...]) -> DeviceState:
    """``vfio_block_migration``: a blocker, or with ``enable-migration=on`` a realize error."""
    if enable == "on":
        return _with(state, realize_error=b.text, has_migration=False,
                     reasons=(*why, "enable-migration=on makes this a realize error: QEMU "
                              "would not have created the device"), assumptions=tuple(notes))
    return _with(state, blocker=b, reasons=why, assumptions=tuple(notes))


def _large_memory(run: _Replay, state: DeviceState, notes: list[str]) -> Blocker | None:
    """11.0 ``vfio_dirty_tracking_exceed_limit``: type1 bitmap vs ``ram_size``."""
    ram = run.topology.basics.base_ram_bytes  # ``ram_size``: -m, not memory devices
    if not since(run.version, LARGE_MEMORY_BLOCKER) or state.device.iommufd:
        return None
    if ram <= TYPE1_MAX_TRACKED_BYTES:
        return None
    d = state.device
    return blocker(run.version, BlockerKind.LARGE_MEMORY, d.qom_path, d.vbasedev_name,
                   rule="vfio_dirty_tracking_exceed_limit: ram_size > 8 TiB at 4 KiB pages")


def _multiple_devices_check(run: _Replay, state: DeviceState, notes: list[str]) -> str | None:
    """``vfio_block_multiple_devices_migration`` at this device's realize; returns a
    realize error for ``enable-migration=on``, else adds the global blocker once."""
    with_migration = [s for s in run.states if s.has_migration] + [state]
    if len(with_migration) <= 1:
        return None
    if since(run.version, P2P_MULTI_DEVICE):
        all_p2p = all(_assume(s.host.p2p if s.host else None, True,
                              f"{s.device.vbasedev_name} supports P2P", notes)
                      for s in with_migration)
        if all_p2p:
            return None
    text = multiple_devices(run.version)
    if state.device.enable_migration == "on":
        return text
    if not any(b.kind is BlockerKind.MULTIPLE_DEVICES for b in run.global_blockers):
        run.global_blockers.append(Blocker(
            text, BlockerKind.MULTIPLE_DEVICES, None, REMEDIES[BlockerKind.MULTIPLE_DEVICES],
            "vfio_block_multiple_devices_migration: several devices with migration and "
            "not all support P2P", trigger=state.device.qom_path))
    return None


def _realize_8_0(run: _Replay, base: DeviceState, notes: list[str]) -> DeviceState:
    """QEMU 8.0: ``x-enable-migration`` (default off), one catch-all per-device text,
    global multiple-device and vIOMMU blockers."""
    d, hd = base.device, base.host
    ok = bool(d.x_enable_migration) and _init_outcome(d, hd, notes) is None
    if not ok:
        why = "x-enable-migration is off (the 8.0 default)" if not d.x_enable_migration \
            else "no migration driver"
        b = Blocker(blocker_text_8_0(), BlockerKind.LEGACY_UNSUPPORTED, d.qom_path,
                    REMEDIES[BlockerKind.LEGACY_UNSUPPORTED], why)
        return _with(base, blocker=b, reasons=(why,), assumptions=tuple(notes))
    devlog = _assume(hd.dma_logging if hd else None, False, "DMA logging (log_ops)", notes)
    state = _with(base, has_migration=True, dma_logging=devlog)
    _multiple_devices_check(run, state, notes)
    # 8.0 vfio_block_giommu_migration: global, when any VFIO address space realized so
    # far (this device's included) is not system memory
    any_viommu = state.behind_viommu or any(s.behind_viommu for s in run.states)
    if any_viommu and not any(b.kind is BlockerKind.VIOMMU for b in run.global_blockers):
        run.global_blockers.append(Blocker(global_viommu(), BlockerKind.VIOMMU, None,
                                           REMEDIES[BlockerKind.VIOMMU], "8.0: a vIOMMU exists",
                                           trigger=d.qom_path))
    return _with(state, assumptions=tuple(notes))


def blocker_text_8_0() -> str:
    return "VFIO device doesn't support migration"

