"""Whether a VM's ``tracking`` and ``blockers`` are published again (pure core).

Stage: decisions. The daemon evaluates every VM's VFIO verdict again on a timer and
after topology events; the two retained payloads go out when what they say changed
(design.md: "No noise"), and each change fires its hook (docs/hooks.md). The
comparison is on the values the payloads are rendered from, never on rendered bytes.
No I/O: the shell keeps the last ``Shown`` and publishes.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmpdirty.decisions.vfio.blockers import Reconciled
from qmpdirty.decisions.vfio.container_ranges import RangeReport
from qmpdirty.decisions.vfio.evaluate import VfioVerdict
from qmpdirty.decisions.vfio.tracking import ContainerVerdict, DeviceVerdict
from qmpdirty.facts.qemu import QemuVersion


@dataclass(frozen=True, slots=True)
class TrackingShown:
    """What ``tracking`` is rendered from: the devices' and containers' verdicts, each
    container's ranges (in container order) and the QEMU version."""

    qemu_version: QemuVersion
    devices: tuple[DeviceVerdict, ...]
    containers: tuple[ContainerVerdict, ...]
    ranges: tuple[RangeReport | None, ...]
    realize_errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Shown:
    """What the last ``tracking`` and ``blockers`` payloads said (their stamps aside)."""

    tracking: TrackingShown
    blockers: Reconciled


@dataclass(frozen=True, slots=True)
class Republish:
    """Publish both payloads (``publish``); fire the hooks of those that changed."""

    publish: bool
    tracking_changed: bool = False
    blockers_changed: bool = False


def shown(v: VfioVerdict) -> Shown:
    """The values behind one evaluation's two payloads."""
    verdict = v.verdict
    tracking = TrackingShown(
        qemu_version=v.topology.basics.version, devices=verdict.devices,
        containers=verdict.containers,
        ranges=tuple(v.ranges.get(c.id) for c in verdict.containers),
        realize_errors=verdict.realize_errors)
    return Shown(tracking, v.reconciled)


def republish(before: Shown | None, now: Shown) -> Republish:
    """Both payloads go out when either changed, and always after a session began
    (``before`` is None); a hook fires only for a payload that changed since the last
    publication of this session, never for the first."""
    if now == before:
        return Republish(publish=False)
    if before is None:
        return Republish(publish=True)
    return Republish(publish=True, tracking_changed=before.tracking != now.tracking,
                     blockers_changed=before.blockers != now.blockers)
