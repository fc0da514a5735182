"""QEMU's blockers that name no single device -> the host facts they settle (pure core).

Stage: decisions, the second step of ``inference.infer`` (after the per-device rules,
which decide who has ``migration``). Two rules:

* ``vfio_block_multiple_devices_migration`` (hw/vfio/common.c, 8.2+) runs at each
  device's realize after the dirty-tracking check and counts every device realized so
  far whose ``vbasedev->migration`` is set - also one that took a dirty-tracking
  blocker under ``enable-migration=auto`` (no ``vfio_migration_deinit``). Every check
  that ran saw a prefix of the last one's set. No ``Multiple VFIO devices migration is
  supported only if all of them support P2P migration`` although that set has several
  devices -> all of them set ``VFIO_MIGRATION_P2P``; the blocker with exactly one of
  them whose P2P was not read -> that one lacks it; with several, which one cannot be
  known (each is assumed to lack it, and a ``Note`` says so).
* QEMU 8.0's catch-all ``VFIO device doesn't support migration`` (reference §3.1 row 8)
  names no device: every ``x-enable-migration=off`` device has one, the others belong
  to ``x-enable-migration=on`` devices whose ``vfio_migration_init`` failed; only "none
  of them" or "all of them" can be attributed.

Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from qmpdirty.decisions.vfio.blocker_texts import BlockerKind, multiple_devices
from qmpdirty.decisions.vfio.blockers import Observed
from qmpdirty.decisions.vfio.realize import DeviceState, blocker_text_8_0, replay
from qmpdirty.decisions.vfio.revisions import Note, Revision
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.qemu import P2P_MULTI_DEVICE, since
from qmpdirty.facts.topology import VmTopology

PCI_TYPES = ("vfio-pci", "vfio-pci-nohotplug")


def catch_all_8_0(topology: VmTopology, host: HostFacts, seen: list[Observed],
                  notes: list[Note]) -> list[Revision]:
    """QEMU 8.0: every x-enable-migration=off device has the catch-all; the rest of the
    catch-alls belong to x-enable-migration=on devices whose vfio_migration_init failed."""
    pci = [d for d in topology.devices if d.qom_type in PCI_TYPES and not d.failover_pair_id]
    on = [d for d in pci if d.x_enable_migration]
    failed = sum(o.text == blocker_text_8_0() for o in seen) - (len(pci) - len(on))
    if not on:
        return []
    if failed not in (0, len(on)):
        notes.append(Note(None, "migration", f"QEMU 8.0 reports {max(failed, 0)} catch-all "
                          f"blocker(s) for {len(on)} x-enable-migration=on devices; the text "
                          "names no device, so which ones could not be known"))
        return []
    value = failed == 0
    reason = (f"QEMU 8.0: {'no' if value else 'a'} 'VFIO device doesn't support migration' "
              "for each x-enable-migration=on device: vfio_migration_init "
              f"{'succeeded' if value else 'failed'}")
    return [Revision(hd.bdf, "migration", value, "8.0-catch-all", reason)
            for hd in (host.device(d.bdf) for d in on) if hd is not None]


def p2p_revisions(topology: VmTopology, host: HostFacts, seen: Sequence[Observed]
                  ) -> tuple[list[Revision], list[Note]]:
    """``vfio_block_multiple_devices_migration`` (8.2+): every check that ran counted the
    devices with ``migration`` realized so far; their union is the last one's set."""
    version = topology.basics.version
    if not since(version, P2P_MULTI_DEVICE):
        return [], []
    states, _, _ = replay(topology, host)
    counted = _last_check(states)
    shown = any(o.text == multiple_devices(version) for o in seen)
    names = ", ".join(s.device.vbasedev_name for s in counted)
    if not counted:
        return [], ([Note(None, "migration", "QEMU reports the P2P blocker, but at most one "
                          "device would have migration support here")] if shown else [])
    if not shown:
        return [Revision(s.host.bdf, "p2p", True, "p2p-absent",
                         f"QEMU: no P2P blocker although {names} have migration: "
                         "vfio_multiple_devices_migration_is_supported() held (P2P)")
                for s in counted if s.host is not None and s.device.bdf], []
    if any(s.host is not None and s.host.p2p.value is False for s in counted):
        return [], []
    open_ = [s for s in counted if s.host is None or s.host.p2p.basis != "host"]
    if len(open_) == 1 and open_[0].host is not None:
        return [Revision(open_[0].host.bdf, "p2p", False, "p2p-one",
                         f"QEMU reports the P2P blocker for {names}; the others' P2P was read")], []
    why = (f"QEMU reports the P2P blocker: at least one of {names} lacks P2P; which could "
           "not be known: assumes each whose P2P was not read lacks it")
    return [Revision(s.host.bdf, "p2p", False, "p2p-some", why, "assumed")
            for s in open_ if s.host is not None and s.device.bdf], [Note(None, "p2p", why)]


def _last_check(states: list[DeviceState]) -> list[DeviceState]:
    """The devices counted by the last multiple-devices check that saw more than one."""
    last: list[DeviceState] = []
    for k, s in enumerate(states):
        ran = s.has_migration and s.realize_error is None and (
            s.blocker is None or s.blocker.kind is BlockerKind.VIOMMU)
        counted = [t for t in states[:k + 1] if t.has_migration]
        if ran and len(counted) > 1:
            last = counted
    return last


