"""Replay of QEMU's per-device migration decision at realize time (pure core).

Stage: decisions. QEMU decides migratability device by device, in realize order
(``vfio_pci_realize`` -> ``vfio_migration_realize``, hw/vfio/migration.c), and
some outcomes depend on that order: the multiple-devices P2P check
(``vfio_block_multiple_devices_migration``, hw/vfio/common.c) counts every
device realized so far whose ``migration`` is set - including devices that later
took a per-device blocker, because under ``enable-migration=auto``
``vfio_block_migration`` succeeds and ``vfio_migration_deinit`` is not called -
while a device that jumps to ``add_blocker`` before the check never runs it.
``replay`` reproduces that order. Every fact it consults is recorded as ``Evidence``
with its basis; an unknown host fact gets a stated default (basis ``assumed``). It
must not infer anything from QEMU's observed blockers: ``inference`` does that first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qmpdirty.decisions.vfio.basis import Evidence, read, unknown, used
from qmpdirty.decisions.vfio.blocker_texts import (
    REMEDIES,
    Blocker,
    BlockerKind,
    blocker,
    global_viommu,
    multiple_devices,
    non_migratable,
)
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
    evidence: tuple[Evidence, ...] = ()  # the facts realize consulted, in order
    dma_evidence: Evidence | None = None  # what ``dma_logging`` rests on
    iommu_evidence: Evidence | None = None  # what ``iommu_dirty`` rests on (IOMMUFD, 9.1+)

    @property
    def assumptions(self) -> tuple[str, ...]:
        """What was assumed about facts nobody could know, as sentences."""
        return tuple(e.reason for e in unknown(self.evidence))


@dataclass
class _Replay:
    version: QemuVersion
    topology: VmTopology
    host: HostFacts
    states: list[DeviceState] = field(default_factory=list)
    global_blockers: list[Blocker] = field(default_factory=list)
    #: facts behind the absence of the multiple-devices blocker (checks that passed)
    global_evidence: list[Evidence] = field(default_factory=list)


@dataclass
class _Device:
    """One device's realize in progress: informational notes and evidence so far."""

    state: DeviceState
    notes: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    def done(self, reasons: tuple[str, ...] = (), *, blocker: Blocker | None = None,
             realize_error: str | None = None, special: str | None = None,
             has_migration: bool | None = None) -> DeviceState:
        s = self.state
        return replace(s, reasons=(*reasons, *self.notes), evidence=tuple(self.evidence),
                       blocker=blocker, realize_error=realize_error, special=special,
                       has_migration=s.has_migration if has_migration is None else has_migration)


def behind_viommu(device: VfioDevice, topology: VmTopology) -> tuple[bool, Evidence | None]:
    """``vfio_viommu_preset``: the device's address space is not system memory, i.e. a
    vIOMMU exists and the host bridge of its root bus does not bypass it
    (``pci_bus_bypass_iommu``). The evidence is None without a vIOMMU."""
    if not topology.viommus:
        return False, None
    path = device.qom_path
    if device.root_bus_bypass_iommu is None:
        return True, Evidence("behind_viommu", True, "assumed", "assumes the device is behind "
                              "the vIOMMU (its root bus is unknown)", path)
    behind = not device.root_bus_bypass_iommu
    why = ("its root bus's host bridge bypasses the vIOMMU (bypass_iommu)" if not behind
           else "a vIOMMU exists and its root bus does not bypass it")
    return behind, read("behind_viommu", behind, f"QOM: {why}", path)


def replay(topology: VmTopology, host: HostFacts
           ) -> tuple[list[DeviceState], list[Blocker], list[Evidence]]:
    """Every VFIO device's realize outcome, in realize order, the global blockers and the
    facts behind the absence of a global blocker."""
    run = _Replay(topology.basics.version, topology, host)
    for device in sorted(topology.devices, key=lambda d: d.realize_index):
        run.states.append(_realize(run, device))
    return run.states, run.global_blockers, run.global_evidence


def _realize(run: _Replay, d: VfioDevice) -> DeviceState:
    viommu, _ = behind_viommu(d, run.topology)
    dev = _Device(DeviceState(d, run.host.device(d.bdf), False, False, False, viommu))
    path = d.qom_path
    if d.qom_type in ("vfio-ap", "vfio-ccw"):
        return _non_migratable(dev)
    if d.qom_type == "vfio-user-pci":
        dev.evidence.append(read("qom-type", d.qom_type, "QOM type", path))
        return dev.done(special="vfio-user", reasons=(
            "vfio-user-pci: QEMU has no migration support for it and registers no blocker "
            "(hw/vfio-user/pci.c, 10.1+): its state would not be migrated",))
    if d.failover_pair_id:
        dev.evidence.append(read("failover_pair_id", d.failover_pair_id,
                                 "QOM property failover_pair_id", path))
        return dev.done(special="failover", reasons=(
            f"failover primary of {d.failover_pair_id}: vfio_pci_realize skips "
            "vfio_migration_realize; it is unplugged for migration, no blocker",))
    if not since(run.version, ENABLE_MIGRATION):
        return _realize_8_0(run, dev)
    return _realize_current(run, dev)


def _non_migratable(dev: _Device) -> DeviceState:
    d = dev.state.device
    name = d.qom_type  # idstr: vmsd name (plus the qdev path on buses that have one)
    dev.evidence.append(read("qom-type", name, "QOM type", d.qom_path))
    b = Blocker(non_migratable(name), BlockerKind.NON_MIGRATABLE, d.qom_path,
                REMEDIES[BlockerKind.NON_MIGRATABLE],
                f"{name}: vmsd.unmigratable (qemu_savevm_non_migratable_list)",
                evidence=tuple(dev.evidence))
    return dev.done(blocker=b, special="non-migratable",
                    reasons=(f"{name} is marked unmigratable (vmstate .unmigratable = 1)",))


def _migration(dev: _Device) -> bool:
    """``vfio_migration_init`` succeeds: the driver has mig_ops with STOP_COPY."""
    hd = dev.state.host
    ev = used(hd.migration if hd else None, "migration", True, "migration driver (mig_ops)",
              dev.state.device.qom_path)
    dev.evidence.append(ev)
    return bool(ev.value)


def _realize_current(run: _Replay, dev: _Device) -> DeviceState:
    """QEMU 8.1 and newer (``enable-migration``)."""
    v, d, hd = run.version, dev.state.device, dev.state.host
    name, path = d.vbasedev_name, d.qom_path
    enable = d.enable_migration or "auto"
    if enable != "auto":
        dev.evidence.append(read("enable-migration", enable,
                                 f"QOM property enable-migration={enable}", path))
    if enable == "off":
        b = blocker(v, BlockerKind.DISABLED, path, name, rule="enable-migration=off")
        return _finish(dev, b, enable, ("enable-migration=off",))
    if not _migration(dev):
        init_error = hd.init_error if hd else None
        kind = BlockerKind.INIT_FAILED if init_error else BlockerKind.NO_KERNEL_SUPPORT
        rule = (f"vfio_migration_init failed, err: {init_error}" if init_error else
                "vfio_migration_init: VFIO_DEVICE_FEATURE_MIGRATION returned -ENOTTY (driver "
                "without mig_ops)")
        b = blocker(v, kind, path, name, rule=rule, detail=init_error or "")
        return _finish(dev, b, enable, ("no migration driver" if not init_error else rule,))
    devlog = _dma_logging(dev)
    iommu = _iommu_dirty(run, dev, devlog)
    if not devlog and not iommu:
        rule = "no DMA logging and no IOMMUFD dirty HWPT (vfio_migration_realize)"
        if enable == "auto":
            b = blocker(v, BlockerKind.NO_DIRTY_TRACKING, path, name, rule=rule)
            return _finish(dev, b, enable, (rule,))
        dev.notes.append(f"enable-migration=on: QEMU only warns ({rule})")
        large = _large_memory(run, dev.state)
        if large is not None:
            return _finish(dev, large, enable, ("guest RAM exceeds the type1 bitmap",))
    p2p_error = _multiple_devices_check(run, dev.state)
    if p2p_error is not None:
        return dev.done(realize_error=p2p_error, reasons=(p2p_error,))
    return _viommu_check(run, dev, devlog, enable)


def _dma_logging(dev: _Device) -> bool:
    """``dirty_pages_supported`` (PROBE of DMA_LOGGING_START) unless
    ``x-device-dirty-page-tracking=off``; sets the state's ``dma_logging``."""
    d, hd = dev.state.device, dev.state.host
    ev = used(hd.dma_logging if hd else None, "dma_logging", False, "DMA logging (log_ops)",
              d.qom_path)
    if d.device_dirty_page_tracking == "off":
        ev = read("x-device-dirty-page-tracking", "off",
                  "QOM property x-device-dirty-page-tracking=off: DMA logging not used",
                  d.qom_path)
        dev.notes.append("x-device-dirty-page-tracking=off: DMA logging not used")
    dev.evidence.append(ev)
    devlog = ev.fact == "dma_logging" and bool(ev.value)
    dev.state = replace(dev.state, has_migration=True, dma_logging=devlog, dma_evidence=ev)
    return devlog


def _iommu_dirty(run: _Replay, dev: _Device, devlog: bool) -> bool:
    """``iommu_dirty_tracking``: an IOMMUFD device (9.1+) on a HWPT with the dirty flag
    (never for an mdev, never on the legacy backend). Consulted by realize only when the
    device cannot DMA-log; the container's engine may consult it later."""
    d, hd = dev.state.device, dev.state.host
    if not (since(run.version, IOMMUFD_DIRTY) and d.iommufd):
        return False
    ev = used(hd.iommu_dirty_tracking if hd else None, "iommu_dirty_tracking", False,
              "host IOMMU dirty tracking", d.qom_path)
    iommu = bool(ev.value) and not (hd and hd.mdev)
    dev.state = replace(dev.state, iommu_dirty=iommu, iommu_evidence=ev)
    if not devlog:
        dev.evidence.append(ev)
    return iommu


def _viommu_check(run: _Replay, dev: _Device, devlog: bool, enable: str) -> DeviceState:
    """``vfio_viommu_preset`` (10.2: any device; 11.0: only one that would DMA-log)."""
    d = dev.state.device
    _, ev = behind_viommu(d, run.topology)
    if ev is not None and (not since(run.version, VIOMMU_RELAXED) or devlog):
        dev.evidence.append(ev)
    if dev.state.behind_viommu and (not since(run.version, VIOMMU_RELAXED) or devlog):
        b = blocker(run.version, BlockerKind.VIOMMU, d.qom_path, d.vbasedev_name,
                    rule="vfio_viommu_preset: the device's address space is not system memory")
        return _finish(dev, b, enable, ("behind a vIOMMU",))
    return dev.done()


def _finish(dev: _Device, b: Blocker, enable: str, why: tuple[str, ...]) -> DeviceState:
    """``vfio_block_migration``: a blocker, or with ``enable-migration=on`` a realize error."""
    if enable == "on":
        return dev.done(realize_error=b.text, has_migration=False, reasons=(
            *why, "enable-migration=on makes this a realize error: QEMU would not have "
                  "created the device"))
    return dev.done(blocker=replace(b, evidence=tuple(dev.evidence)), reasons=why)


def _large_memory(run: _Replay, state: DeviceState) -> Blocker | None:
    """11.0 ``vfio_dirty_tracking_exceed_limit``: type1 bitmap vs ``ram_size``."""
    ram = run.topology.basics.base_ram_bytes  # ``ram_size``: -m, not memory devices
    if not since(run.version, LARGE_MEMORY_BLOCKER) or state.device.iommufd:
        return None
    if ram <= TYPE1_MAX_TRACKED_BYTES:
        return None
    d = state.device
    return blocker(run.version, BlockerKind.LARGE_MEMORY, d.qom_path, d.vbasedev_name,
                   rule="vfio_dirty_tracking_exceed_limit: ram_size > 8 TiB at 4 KiB pages")


def _multiple_devices_check(run: _Replay, state: DeviceState) -> str | None:
    """``vfio_block_multiple_devices_migration`` at this device's realize; returns a
    realize error for ``enable-migration=on``, else adds the global blocker once."""
    with_migration = [s for s in run.states if s.has_migration] + [state]
    if len(with_migration) <= 1:
        return None
    evidence = [e for s in with_migration for e in s.evidence if e.fact == "migration"]
    if since(run.version, P2P_MULTI_DEVICE):
        p2p = [used(s.host.p2p if s.host else None, "p2p", True,
                    f"{s.device.vbasedev_name} supports P2P", s.device.qom_path)
               for s in with_migration]
        evidence += p2p
        if all(e.value for e in p2p):
            run.global_evidence += evidence
            return None
        evidence = [e for e in evidence if e.fact == "migration" or not e.value]
    text = multiple_devices(run.version)
    if state.device.enable_migration == "on":
        return text
    if not any(b.kind is BlockerKind.MULTIPLE_DEVICES for b in run.global_blockers):
        run.global_blockers.append(Blocker(
            text, BlockerKind.MULTIPLE_DEVICES, None, REMEDIES[BlockerKind.MULTIPLE_DEVICES],
            "vfio_block_multiple_devices_migration: several devices with migration and "
            "not all support P2P", trigger=state.device.qom_path, evidence=tuple(evidence)))
    return None


def _realize_8_0(run: _Replay, dev: _Device) -> DeviceState:
    """QEMU 8.0: ``x-enable-migration`` (default off), one catch-all per-device text,
    global multiple-device and vIOMMU blockers; no dirty-tracking check."""
    d = dev.state.device
    dev.evidence.append(read("x-enable-migration", "on" if d.x_enable_migration else "off",
                             "QOM property x-enable-migration", d.qom_path))
    ok = bool(d.x_enable_migration) and _migration(dev)
    if not ok:
        why = "x-enable-migration is off (the 8.0 default)" if not d.x_enable_migration \
            else "no migration driver"
        b = Blocker(blocker_text_8_0(), BlockerKind.LEGACY_UNSUPPORTED, d.qom_path,
                    REMEDIES[BlockerKind.LEGACY_UNSUPPORTED], why, evidence=tuple(dev.evidence))
        return dev.done(blocker=b, reasons=(why,))
    _dma_logging(dev)
    _multiple_devices_check(run, dev.state)
    # 8.0 vfio_block_giommu_migration: global, when any VFIO address space realized so
    # far (this device's included) is not system memory
    any_viommu = dev.state.behind_viommu or any(s.behind_viommu for s in run.states)
    if any_viommu and not any(b.kind is BlockerKind.VIOMMU for b in run.global_blockers):
        _, ev = behind_viommu(d, run.topology)
        run.global_blockers.append(Blocker(global_viommu(), BlockerKind.VIOMMU, None,
                                           REMEDIES[BlockerKind.VIOMMU], "8.0: a vIOMMU exists",
                                           trigger=d.qom_path,
                                           evidence=(ev,) if ev is not None else ()))
    return dev.done()


def blocker_text_8_0() -> str:
    return "VFIO device doesn't support migration"
