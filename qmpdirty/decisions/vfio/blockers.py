"""Predicted blockers reconciled with the ones QEMU reports (pure core).

Stage: decisions. ``query-migrate`` ``blocked-reasons`` is QEMU's truth: it decides
``migratable``. The prediction says *why*, with a cause and a remedy, and is
checked against it: ``agree`` is true only when the predicted set equals the
observed blockers of the kinds qmpdirty models (VFIO's, and non-migratable VFIO
devices). Blockers of other kinds (a read-write vvfat drive, a device without
migration support) cannot be predicted from VFIO facts; they are published
verbatim as ``unmodelled`` and make the VM unmigratable, but do not count against
``agree``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmpdirty.decisions.vfio.blocker_texts import Blocker
from qmpdirty.facts.topology import FD_NAME

#: Every VFIO blocker text QEMU 8.0-11.0 can produce (blocker_texts.py), as patterns.
_VFIO_PATTERNS = tuple(re.compile(p) for p in (
    r".+: Migration is disabled for VFIO device",
    r".+: VFIO migration is not supported in kernel",
    r".+: Migration couldn't be initialized for VFIO device, err: .+",
    r".+: VFIO device doesn't support device (and IOMMU )?dirty tracking",
    r"Multiple VFIO devices migration is supported only if all of them support P2P migration",
    r"Migration is currently not supported with multiple VFIO devices",
    r"(.+: )?Migration is currently not supported with vIOMMU enabled",
    r".+: Migration is currently not supported with large memory VM due to dirty tracking "
    r"limitation in backend",
    r"VFIO device doesn't support migration",
    r"non-migratable device: (.*/)?vfio-(ap|ccw)",
))


def is_vfio_blocker(text: str) -> bool:
    """True when ``text`` is one of the VFIO blocker texts qmpdirty models."""
    return any(p.fullmatch(text) for p in _VFIO_PATTERNS)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """Prediction vs observation for one VM."""

    migratable: bool
    predicted: tuple[Blocker, ...]
    observed: tuple[str, ...]
    agree: bool
    missing: tuple[str, ...]  # predicted, but QEMU does not report it
    unexpected: tuple[str, ...]  # QEMU reports a VFIO blocker that was not predicted
    unmodelled: tuple[str, ...]  # QEMU reports a blocker of a kind not modelled here


_FD_NAME = re.compile(r"^VFIO_FD\d+: ")


def _comparable(observed: str) -> str:
    """An fd-passed device's blocker as predicted: its fd number is not visible."""
    return _FD_NAME.sub(f"{FD_NAME}: ", observed)


def reconcile(predicted: tuple[Blocker, ...], observed: tuple[str, ...] | None) -> Reconciled:
    """Compare; without an observation (``None``) the prediction alone decides."""
    texts = [b.text for b in predicted]
    if observed is None:
        return Reconciled(not predicted, predicted, (), False, (), (), ())
    modelled = [_comparable(o) for o in observed if is_vfio_blocker(o)]
    missing = tuple(t for t in texts if t not in modelled)
    unexpected = tuple(o for o in modelled if o not in texts)
    return Reconciled(
        migratable=not observed,
        predicted=predicted,
        observed=observed,
        agree=set(texts) == set(modelled),
        missing=missing,
        unexpected=unexpected,
        unmodelled=tuple(o for o in observed if not is_vfio_blocker(o)),
    )
