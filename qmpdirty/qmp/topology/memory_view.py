"""The flat memory view of one VM, for ``qmpdirty ranges``: a sans-I/O query (pure).

Stage: translate. ``MemoryViewQuery`` asks, in one round, ``info mtree -f -o`` (the
``FLAT_VIEW`` the topology query reads), ``query-version`` unless the caller knows the
version, and the peripheral containers unless the caller names the vfio-pci owners;
its ``MemoryView`` holds the text, the view of address space ``memory`` parsed from it
(``mtree``), the version and the owners (found ones spelled as ``info mtree -o`` spells
them), given or read.
``qmp/gather.run`` drives it over a session. Must not do I/O, import asyncio/socket/
logging/time/os, or hold a session. Only queries are asked.

Failure: the flat view and the version are needed, so any error reply (or none) to them
raises ``QmpCommandError`` (``QmpError``) from ``receive``; a peripheral container QEMU
never created lists no children. A reply of the wrong shape raises ``QmpReplyError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.topology import VFIO_PCI_TYPES, FlatSection
from qmpdirty.qmp.topology.exchange import Answers, Query, Request, Steps
from qmpdirty.qmp.topology.mtree import flat_view_for
from qmpdirty.qmp.topology.query import FLAT_VIEW, PERIPHERALS, children_in, listing_request
from qmpdirty.qmp.topology.replies import QomChild, owner_name, text_from
from qmpdirty.qmp.translate import version_from

#: ``FLAT_VIEW``, but needed: ``ranges`` has nothing to say without it.
_NEEDED_FLAT_VIEW = dataclasses.replace(FLAT_VIEW, optional=False)


@dataclass(frozen=True, slots=True)
class MemoryView:
    """What ``MemoryViewQuery`` read (the version and owners as given, when given)."""

    mtree_text: str
    #: the sections of the view that renders address space ``memory``; None: no view does
    sections: tuple[FlatSection, ...] | None
    version: QemuVersion
    vfio_owners: tuple[str, ...]


class MemoryViewQuery(Query[MemoryView]):
    """The flat view, in one round with ``query-version`` unless ``version`` is given,
    and with the peripheral containers (their vfio-pci devices are the owners) unless
    ``vfio_owners`` are."""

    def __init__(self, *, version: QemuVersion | None = None,
                 vfio_owners: Sequence[str] = ()) -> None:
        super().__init__(_rounds(version, tuple(vfio_owners)))


def vfio_pci_owners(children: Iterable[QomChild]) -> tuple[str, ...]:
    """The vfio-pci devices among ``children``, named as ``info mtree -o`` names owners."""
    return tuple(owner_name(c) for c in children if c.qom_type in VFIO_PCI_TYPES)


def _rounds(version: QemuVersion | None, owners: tuple[str, ...]) -> Steps[MemoryView]:
    containers = () if owners else PERIPHERALS
    batch = [*([Request("query-version")] if version is None else []), _NEEDED_FLAT_VIEW,
             *(listing_request(c) for c in containers)]
    answers = Answers(batch, (yield batch))
    if version is None:
        version = version_from(answers.value())
    text = text_from(answers.value())
    listed = [c for name in containers for c in children_in(answers, name)]
    return MemoryView(text, flat_view_for(text, "memory"), version,
                      owners or vfio_pci_owners(listed))
