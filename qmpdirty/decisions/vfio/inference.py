"""QEMU's observed ``blocked-reasons`` -> the host facts they settle (pure core).

Stage: decisions, between host interpretation (``host_caps``) and the realize replay
(``evaluate``). QEMU probed the device itself when it realized it; what it then
registered as a blocker - or did not - is evidence about the host that debugfs may
not show (reference §9: most production kernels have no debugfs ``features``). This
step revises the ``HostFacts`` accordingly; each revised fact gets basis ``qemu`` (or
the weaker basis of the premise it also needed) and a source naming the rule. A fact
read from the host that QEMU contradicts is revised too, and its source says so.

The rules replay ``vfio_migration_realize`` (hw/vfio/migration.c, QEMU 8.1-11.0,
reference §1.3) backwards for one device named ``N`` (its ``vbasedev->name``):

* ``enable-migration=auto``: ``N: VFIO migration is not supported in kernel`` (-ENOTTY
  from ``vfio_migration_init``) -> no mig_ops; ``N: Migration couldn't be initialized
  ... err: E`` -> mig_ops without STOP_COPY or another init error E; ``N: VFIO device
  doesn't support device [and IOMMU] dirty tracking`` -> init succeeded, no DMA logging
  (unless ``x-device-dirty-page-tracking=off``) and, on IOMMUFD 9.1+, no dirty HWPT;
  the vIOMMU blocker or no per-device blocker at all -> init succeeded and the
  dirty-tracking check passed: DMA logging, or (IOMMUFD 9.1+) a dirty HWPT. The legacy
  backend never sets ``iommu_dirty_tracking`` (reference §1.1), so there it is DMA
  logging; so it is before 9.1 (the check is ``!dirty_pages_supported`` alone).
  11.0 blocks a device behind a vIOMMU only if it would DMA-log
  (``vfio_device_dirty_pages_disabled``).
* ``enable-migration=on``: no blocker is ever registered (``vfio_block_migration``
  propagates the error and realize fails; missing dirty tracking only warns): a device
  that exists passed ``vfio_migration_init``, nothing more is known.
* ``enable-migration=off``, failover primaries, vfio-user-pci, vfio-ap/ccw: QEMU never
  probes the device: nothing is learnt.
* Blockers that name no single device (the 8.2+ P2P blocker, 8.0's catch-all):
  ``inference_global``, run after the per-device rules.

Premises: ``blocked-reasons`` lists the blockers of the current migration ``mode``
only (reference §3.4); qmpdirty assumes ``normal``. An fd-passed device's name is not
visible over QMP, so nothing is inferred for it. Where QEMU's state leaves a fact
open, or contradicts a fact read over QMP, a ``Note`` says so; ``disagreement.explain``
names the facts behind a disagreement that remains. Must not do I/O or decide modes itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qmpdirty.decisions.vfio.blocker_texts import BlockerKind
from qmpdirty.decisions.vfio.blockers import Observed, classify
from qmpdirty.decisions.vfio.inference_global import PCI_TYPES, catch_all_8_0, p2p_revisions
from qmpdirty.decisions.vfio.revisions import FactName, Note, Revision, apply
from qmpdirty.facts.fact import Fact, weakest
from qmpdirty.facts.host import HostDevice, HostFacts
from qmpdirty.facts.qemu import (
    ENABLE_MIGRATION,
    IOMMUFD_DIRTY,
    VIOMMU_RELAXED,
    QemuVersion,
    release_before,
    release_text,
    since,
)
from qmpdirty.facts.topology import VfioDevice, VmTopology

#: How the notes name the releases on either side of ``VIOMMU_RELAXED``.
_RELAXED = release_text(VIOMMU_RELAXED)
_STRICT = release_text(release_before(VIOMMU_RELAXED))


@dataclass(frozen=True, slots=True)
class Inference:
    """The host as QEMU's observed state revised it, the revisions, what stays open."""

    host: HostFacts
    revisions: tuple[Revision, ...]
    notes: tuple[Note, ...]




def infer(topology: VmTopology, host: HostFacts) -> Inference:
    """Per-device rules first (they decide who has ``migration``), then the P2P rule."""
    version = topology.basics.version
    seen = [o for o in map(classify, topology.blocked_reasons) if o is not None]
    revisions: list[Revision] = []
    notes: list[Note] = []
    if not since(version, ENABLE_MIGRATION):
        revisions += catch_all_8_0(topology, host, seen, notes)
    for d in topology.devices if since(version, ENABLE_MIGRATION) else ():
        hd = host.device(d.bdf)
        if hd is not None and d.qom_type in PCI_TYPES and not d.failover_pair_id:
            mine = [o for o in seen if o.name == d.vbasedev_name]
            found, open_ = device_revisions(version, d, hd, mine, _behind(d, topology))
            revisions += found
            notes += open_
    revised = apply(host, revisions)
    more, open_ = p2p_revisions(topology, revised, seen)
    return Inference(apply(revised, more), (*revisions, *more), (*notes, *open_))


def _behind(d: VfioDevice, topology: VmTopology) -> bool | None:
    """Behind a vIOMMU as read over QMP (None: its root bus is unknown)."""
    if not topology.viommus:
        return False
    return None if d.root_bus_bypass_iommu is None else not d.root_bus_bypass_iommu


def device_revisions(version: QemuVersion, d: VfioDevice, hd: HostDevice,
                     seen: Sequence[Observed], behind: bool | None
                     ) -> tuple[list[Revision], list[Note]]:
    """What one device's per-device blockers (``seen``, QEMU >= 8.1) say about its host."""
    n, bdf, path = d.vbasedev_name, hd.bdf, d.qom_path
    kinds = {o.kind for o in seen}
    enable = d.enable_migration or "auto"
    if enable == "off":
        return [], []
    if enable == "on":
        if seen:
            return [], [Note(path, "enable-migration", f"QEMU reports {seen[0].text!r} although "
                             "enable-migration=on turns blockers into realize errors")]
        return [Revision(bdf, "migration", True, "on-realized",
                         f"QEMU realized {n} with enable-migration=on: vfio_migration_init "
                         "succeeded (a failure fails realize, vfio_block_migration)")], []
    if BlockerKind.NO_KERNEL_SUPPORT in kinds:
        return [Revision(bdf, "migration", False, "no-kernel",
                         f"QEMU: '{n}: VFIO migration is not supported in kernel': "
                         "VFIO_DEVICE_FEATURE_MIGRATION returned -ENOTTY (no mig_ops)")], []
    failed = next((o for o in seen if o.kind is BlockerKind.INIT_FAILED), None)
    if failed is not None:
        return [Revision(bdf, "migration", False, "init-failed",
                         f"QEMU: vfio_migration_init failed for {n}, err: {failed.detail}",
                         init_error=failed.detail)], []
    if BlockerKind.DISABLED in kinds:
        return [], [Note(path, "enable-migration", f"QEMU reports '{n}: Migration is disabled "
                         "for VFIO device' although QOM shows enable-migration=auto")]
    init = Revision(bdf, "migration", True, "init-ok",
                    f"QEMU: no '{n}: VFIO migration is not supported in kernel' blocker: "
                    "vfio_migration_init succeeded (mig_ops with STOP_COPY)")
    if BlockerKind.NO_DIRTY_TRACKING in kinds:
        return [init, *_no_dirty(version, d, hd)], []
    if since(version, VIOMMU_RELAXED):
        return _relaxed_viommu(version, d, hd, init, blocked=BlockerKind.VIOMMU in kinds,
                               behind=behind)
    found, open_ = _passed(version, d, hd)
    if behind and BlockerKind.VIOMMU not in kinds:
        open_.append(Note(path, "behind_viommu", f"QEMU <= {_STRICT} blocks every device behind a "
                          f"vIOMMU, but reports no vIOMMU blocker for {n}"))
    return [init, *found], open_


def _no_dirty(version: QemuVersion, d: VfioDevice, hd: HostDevice) -> list[Revision]:
    """``N: VFIO device doesn't support device [and IOMMU] dirty tracking``."""
    n, found = d.vbasedev_name, []
    head = f"QEMU: '{n}: VFIO device doesn't support ... dirty tracking' (vfio_migration_realize)"
    if d.device_dirty_page_tracking != "off":
        found.append(Revision(hd.bdf, "dma_logging", False, "no-dirty",
                              f"{head}: PROBE(DMA_LOGGING_START) failed (no log_ops)"))
    if since(version, IOMMUFD_DIRTY) and d.iommufd and not hd.mdev:
        found.append(Revision(hd.bdf, "iommu_dirty_tracking", False, "no-dirty-hwpt",
                              f"{head}: its IOMMUFD HWPT has no dirty tracking"))
    return found


def _passed(version: QemuVersion, d: VfioDevice, hd: HostDevice
            ) -> tuple[list[Revision], list[Note]]:
    """The dirty-tracking check of ``vfio_migration_realize`` passed for ``d``:
    8.1-9.0 ``dirty_pages_supported``; 9.1+ ``(dirty_pages_supported && x-device-...
    != off) || iommu_dirty_tracking``, the latter only on IOMMUFD (not for an mdev)."""
    n, bdf, path = d.vbasedev_name, hd.bdf, d.qom_path
    head = f"QEMU: no dirty-tracking blocker for {n} (enable-migration=auto)"
    xdev_off = d.device_dirty_page_tracking == "off"
    if not (since(version, IOMMUFD_DIRTY) and d.iommufd and not hd.mdev):
        if xdev_off:
            return [], [Note(path, "x-device-dirty-page-tracking", f"{head}, yet DMA logging is "
                             "off and only IOMMUFD devices have a dirty HWPT")]
        return [Revision(bdf, "dma_logging", True, "passed-devlog",
                         f"{head} and no IOMMUFD dirty HWPT possible: PROBE(DMA_LOGGING_START) "
                         "succeeded (log_ops)")], []
    if xdev_off:
        return [Revision(bdf, "iommu_dirty_tracking", True, "passed-hwpt",
                         f"{head} with x-device-dirty-page-tracking=off: its HWPT has "
                         "IOMMU_HWPT_ALLOC_DIRTY_TRACKING")], []
    dma, hwpt = hd.dma_logging, hd.iommu_dirty_tracking
    if dma.value or hwpt.value:
        return [], []
    if dma.value is None and hwpt.value is None:
        why = (f"{head}: DMA logging or a dirty HWPT; which one could not be known: "
               "assumes no DMA logging, so the HWPT")
        return [Revision(bdf, "iommu_dirty_tracking", True, "passed-either", why, "assumed")], [
            Note(path, "dma_logging", why)]
    # one of them is known to be missing (or both are, and the weaker one is wrong)
    revise_dma = hwpt.value is False and (dma.value is None or _weaker(dma, hwpt))
    premise = hwpt if revise_dma else dma
    fact: FactName = "dma_logging" if revise_dma else "iommu_dirty_tracking"
    return [Revision(bdf, fact, True, "passed-other",
                     f"{head}: {'DMA logging' if revise_dma else 'a dirty HWPT'}, since "
                     f"{'the HWPT has none' if revise_dma else 'it cannot DMA-log'} "
                     f"({premise.source})", weakest(["qemu", premise.basis]))], []


def _weaker(a: Fact[bool], b: Fact[bool]) -> bool:
    return weakest([a.basis, b.basis]) == a.basis


def _relaxed_viommu(version: QemuVersion, d: VfioDevice, hd: HostDevice, init: Revision, *,
                    blocked: bool, behind: bool | None) -> tuple[list[Revision], list[Note]]:
    """11.0: the vIOMMU blocker only for a device that will DMA-log
    (``!vfio_device_dirty_pages_disabled`` and ``vfio_viommu_preset``)."""
    n, path = d.vbasedev_name, d.qom_path
    if blocked:
        if d.device_dirty_page_tracking == "off":
            return [init], [Note(path, "x-device-dirty-page-tracking",
                                 f"QEMU {_RELAXED} reports the vIOMMU blocker for {n}, "
                                 "whose DMA logging is off")]
        return [init, Revision(hd.bdf, "dma_logging", True, "viommu-devlog",
                               f"QEMU {_RELAXED}: '{n}: Migration is currently not supported with "
                               "vIOMMU enabled' is raised only for a device that DMA-logs")], []
    if not behind:
        found, open_ = _passed(version, d, hd)
        return [init, *found], open_
    if not (d.iommufd and not hd.mdev):
        return [init], [Note(path, "behind_viommu", f"QEMU {_RELAXED} would block {n} behind the "
                             "vIOMMU (type1 passes only with DMA logging), but reports nothing")]
    found = [Revision(hd.bdf, "iommu_dirty_tracking", True, "viommu-hwpt",
                      f"QEMU {_RELAXED}: no blocker for {n} behind the vIOMMU: it does not "
                      "DMA-log, so it passed on a dirty HWPT")]
    if d.device_dirty_page_tracking != "off":
        found.append(Revision(hd.bdf, "dma_logging", False, "viommu-no-devlog",
                              f"QEMU {_RELAXED}: no vIOMMU blocker for {n} behind the vIOMMU: "
                              "vfio_device_dirty_pages_disabled (no log_ops)"))
    return [init, *found], []
