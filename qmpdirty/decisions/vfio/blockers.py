"""Predicted blockers reconciled with the ones QEMU reports (pure core).

Stage: decisions. ``query-migrate`` ``blocked-reasons`` is QEMU's truth: it decides
``migratable``. The prediction says *why*, with a cause and a remedy, and is
checked against it. ``agree`` is claimed only about the kinds qmpdirty models (VFIO's
blockers and non-migratable VFIO devices): true when the predicted set equals the
observed blockers of those kinds, false when not, and null when nothing was
compared: the VM has no VFIO device (so nothing was predicted) and QEMU reports no
VFIO blocker, or there is no observation. Blockers of other kinds (a read-write
vvfat drive, a device without migration support) cannot be predicted from VFIO
facts; they are published verbatim as ``unmodelled`` and make the VM unmigratable,
but never count for or against ``agree`` (first-use review B6).

``classify`` reads an observed text back into its kind and device name: the
inference (``inference.py``) and the explanation of a disagreement rest on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmpdirty.decisions.vfio.blocker_texts import Blocker, BlockerKind
from qmpdirty.facts.topology import FD_NAME

_N = r"(?P<name>.+?): "
#: Every VFIO blocker text QEMU 8.0-11.0 can produce (blocker_texts.py), as patterns
#: with the device's ``vbasedev->name`` (``name``) and errno text (``detail``).
_VFIO_PATTERNS: tuple[tuple[BlockerKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern)) for kind, pattern in (
        (BlockerKind.DISABLED, _N + r"Migration is disabled for VFIO device"),
        (BlockerKind.NO_KERNEL_SUPPORT, _N + r"VFIO migration is not supported in kernel"),
        (BlockerKind.INIT_FAILED,
         _N + r"Migration couldn't be initialized for VFIO device, err: (?P<detail>.+)"),
        (BlockerKind.NO_DIRTY_TRACKING,
         _N + r"VFIO device doesn't support device (and IOMMU )?dirty tracking"),
        (BlockerKind.MULTIPLE_DEVICES, r"Multiple VFIO devices migration is supported only if "
                                       r"all of them support P2P migration"),
        (BlockerKind.MULTIPLE_DEVICES,
         r"Migration is currently not supported with multiple VFIO devices"),
        (BlockerKind.VIOMMU, r"(?:" + _N + r")?Migration is currently not supported with vIOMMU "
                             r"enabled"),
        (BlockerKind.LARGE_MEMORY, _N + r"Migration is currently not supported with large "
                                   r"memory VM due to dirty tracking limitation in backend"),
        (BlockerKind.LEGACY_UNSUPPORTED, r"VFIO device doesn't support migration"),
        (BlockerKind.NON_MIGRATABLE, r"non-migratable device: (?P<name>(.*/)?vfio-(ap|ccw))"),
    ))


@dataclass(frozen=True, slots=True)
class Observed:
    """One VFIO blocker of ``blocked-reasons``, read back: kind, device name (None for a
    global blocker), errno text of an init failure."""

    text: str
    kind: BlockerKind
    name: str | None
    detail: str | None = None


def classify(text: str) -> Observed | None:
    """The kind of a VFIO blocker text; None for a kind qmpdirty does not model."""
    for kind, pattern in _VFIO_PATTERNS:
        m = pattern.fullmatch(text)
        if m is not None:
            groups = m.groupdict()
            return Observed(text, kind, groups.get("name"), groups.get("detail"))
    return None


def is_vfio_blocker(text: str) -> bool:
    """True when ``text`` is one of the VFIO blocker texts qmpdirty models."""
    return classify(text) is not None


@dataclass(frozen=True, slots=True)
class UnknownFact:
    """A fact behind a disagreement with QEMU that could not be known."""

    device: str | None  # qom path; None: not about one device
    fact: str
    reason: str


@dataclass(frozen=True, slots=True)
class Reconciled:
    """Prediction vs observation for one VM."""

    migratable: bool
    predicted: tuple[Blocker, ...]
    observed: tuple[str, ...]
    agree: bool | None  # None: nothing was compared
    missing: tuple[str, ...]  # predicted, but QEMU does not report it
    unexpected: tuple[str, ...]  # QEMU reports a VFIO blocker that was not predicted
    unmodelled: tuple[str, ...]  # QEMU reports a blocker of a kind not modelled here
    unknown_facts: tuple[UnknownFact, ...] = ()  # behind a disagreement (``inference``)

    @property
    def disagrees(self) -> bool:
        """The prediction and QEMU were compared and differ."""
        return self.agree is False


_FD_NAME = re.compile(r"^VFIO_FD\d+: ")


def comparable(observed: str) -> str:
    """An fd-passed device's blocker as predicted: its fd number is not visible."""
    return _FD_NAME.sub(f"{FD_NAME}: ", observed)


def reconcile(predicted: tuple[Blocker, ...], observed: tuple[str, ...] | None,
              modelled: bool = True) -> Reconciled:
    """Compare; without an observation (``None``) the prediction alone decides.
    ``modelled``: the VM has a VFIO device, so the absence of a prediction is one."""
    texts = [b.text for b in predicted]
    if observed is None:
        return Reconciled(not predicted, predicted, (), None, (), (), ())
    vfio = [comparable(o) for o in observed if is_vfio_blocker(o)]
    compared = modelled or bool(vfio) or bool(predicted)
    return Reconciled(
        migratable=not observed,
        predicted=predicted,
        observed=observed,
        agree=set(texts) == set(vfio) if compared else None,
        missing=tuple(t for t in texts if t not in vfio),
        unexpected=tuple(o for o in vfio if o not in texts),
        unmodelled=tuple(o for o in observed if not is_vfio_blocker(o)),
    )
