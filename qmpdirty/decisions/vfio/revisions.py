"""Host facts revised by QEMU's observed state: the values and how they apply (pure core).

Stage: decisions (``inference`` and ``inference_global`` produce them). A ``Revision``
is one host fact that QEMU's ``blocked-reasons`` settle, with the rule and its
reason; a ``Note`` is what QEMU's state leaves open or contradicts. ``apply`` writes
revisions into ``HostFacts``: a fact read from the host that QEMU confirms stays read
(basis ``host``), any other one takes the revision's basis, and a contradicted fact's
source names what QEMU overrode. Must not decide which facts are revised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from qmpdirty.decisions.vfio.basis import word
from qmpdirty.facts.fact import Basis, Fact
from qmpdirty.facts.host import HostDevice, HostFacts

FactName = Literal["migration", "p2p", "dma_logging", "iommu_dirty_tracking"]


@dataclass(frozen=True, slots=True)
class Revision:
    """One host fact that QEMU's observed state settles."""

    bdf: str
    fact: FactName
    value: bool
    rule: str  # a short id, for tests and docs
    reason: str
    basis: Basis = "qemu"
    init_error: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Something QEMU's state leaves open or contradicts, about one fact."""

    device: str | None  # qom path
    fact: str
    text: str



def apply(host: HostFacts, revisions: Sequence[Revision]) -> HostFacts:
    """``host`` with the revised facts; a fact read from the host that QEMU confirms stays
    read (basis ``host``), one it contradicts is replaced and the source says so."""
    devices = dict(host.devices)
    by_bdf = {key: key for key in devices} | {hd.bdf: key for key, hd in devices.items()}
    for r in revisions:
        key = by_bdf.get(r.bdf)
        if key is not None:
            devices[key] = _revised(devices[key], r)
    return replace(host, devices=devices)


def _revised(hd: HostDevice, r: Revision) -> HostDevice:
    old = _fact(hd, r.fact)
    if old.value is r.value and old.basis == "host":
        return hd
    if old.value is None:
        source = r.reason
    elif old.value is r.value:
        source = f"{r.reason} (agrees with {old.source})"
    else:
        source = f"{r.reason}; {old.source} said {word(old.value)}, overridden by QEMU"
    revised = _with_fact(hd, r.fact, Fact(r.value, source, r.basis))
    return revised if r.init_error is None else replace(revised, init_error=r.init_error)


def _fact(hd: HostDevice, name: FactName) -> Fact[bool]:
    match name:
        case "migration":
            return hd.migration
        case "p2p":
            return hd.p2p
        case "dma_logging":
            return hd.dma_logging
        case "iommu_dirty_tracking":
            return hd.iommu_dirty_tracking


def _with_fact(hd: HostDevice, name: FactName, fact: Fact[bool]) -> HostDevice:
    match name:
        case "migration":
            return replace(hd, migration=fact)
        case "p2p":
            return replace(hd, p2p=fact)
        case "dma_logging":
            return replace(hd, dma_logging=fact)
        case "iommu_dirty_tracking":
            return replace(hd, iommu_dirty_tracking=fact)
