"""Parser of ``info mtree -f -o`` (HMP), the flat memory view QEMU renders (pure core).

Format (system/memory.c ``mtree_print_flatview``, QEMU 8.0-11.x)::

    FlatView #<n>
     AS "<as name>", root: <mr>[, alias <mr>]         (one line per address space)
     Root memory region: <mr>
      <start>-<end> (prio <p>, [nv-]<type>): <name>[ @<offset>][ owner:{dev id=X}|
          owner:{dev path=...}|owner:{obj path=...}][ parent:{...}]|[ orphan][ kvm...]

``end`` is inclusive; ``<type>`` is ``rom`` when the flat range is read-only, else
``ramd`` / ``romd`` / ``rom`` / ``ram`` / ``i/o`` (``memory_region_type``). The owner
block needs ``-o``. Names may contain spaces (``0000:3b:00.1 BAR 0 mmaps[0]``).
Lines that do not parse are skipped, never fatal: this text comes from a peer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmpdirty.facts.topology import FlatKind, FlatSection

_VIEW = re.compile(r"^FlatView #(\d+)\s*$")
_AS = re.compile(r'^ AS "(.*)", root: ')
_RANGE = re.compile(
    r"^  ([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, (nv-)?(ramd|romd|rom|ram|i/o)\): (.*)$"
)
_OWNER = re.compile(r" owner:\{(?:dev|obj) (?:id|path|type)=([^}]*)\}")
_TAIL_START = re.compile(r" (?:owner|parent):\{| orphan(?: |$)")
_OFFSET = re.compile(r"^(.*) @([0-9a-f]{16})$")


@dataclass(frozen=True, slots=True)
class FlatView:
    """One rendered flat view and the address spaces that share it."""

    number: int
    address_spaces: tuple[str, ...]
    sections: tuple[FlatSection, ...]


def _section(match: re.Match[str]) -> FlatSection:
    start, end = int(match.group(1), 16), int(match.group(2), 16)
    kind: FlatKind = match.group(4)  # type: ignore[assignment]
    rest = match.group(5)
    tail_at = _TAIL_START.search(rest)
    head, tail = (rest[: tail_at.start()], rest[tail_at.start():]) if tail_at else (rest, "")
    offset = 0
    with_offset = _OFFSET.match(head)
    if with_offset:
        head, offset = with_offset.group(1), int(with_offset.group(2), 16)
    owner = _OWNER.search(tail)
    return FlatSection(start=start, end=end, kind=kind, name=head, offset=offset,
                       owner=owner.group(1) if owner else None,
                       nonvolatile=match.group(3) is not None)


def parse_flat_views(text: str) -> tuple[FlatView, ...]:
    """Every flat view in the text, in order."""
    views: list[FlatView] = []
    number: int | None = None
    spaces: list[str] = []
    sections: list[FlatSection] = []

    def close() -> None:
        if number is not None:
            views.append(FlatView(number, tuple(spaces), tuple(sections)))

    for line in text.splitlines():
        if (view := _VIEW.match(line)) is not None:
            close()
            number, spaces, sections = int(view.group(1)), [], []
        elif number is None:
            continue
        elif (space := _AS.match(line)) is not None:
            spaces.append(space.group(1))
        elif (rng := _RANGE.match(line)) is not None:
            sections.append(_section(rng))
    close()
    return tuple(views)


def flat_view_for(text: str, address_space: str = "memory") -> tuple[FlatSection, ...] | None:
    """The sections of the view that ``address_space`` renders (``memory`` = system
    memory, what a VFIO container without vIOMMU maps); None if no view lists it."""
    for view in parse_flat_views(text):
        if address_space in view.address_spaces:
            return view.sections
    return None
