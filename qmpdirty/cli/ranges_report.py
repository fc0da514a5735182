"""What ``qmpdirty ranges`` reports, as a typed value, and its two renderings (pure).

Stage: CLI rendering. ``build_report`` runs the pure core (``decisions/vfio/ranges``,
``decisions/vfio/planner``) over a flat view and returns a ``RangesReport``; ``to_json``
is the ``--json`` output (the fields in declaration order, as ``json.dumps(indent=2)``
writes them), ``human`` the text. Must not do I/O or decide anything itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from qmpdirty.decisions.vfio.planner import (
    Span,
    covered_bytes,
    kernel_combine,
    normalise,
    optimal_plan,
)
from qmpdirty.decisions.vfio.ranges import check_kernel, predict_ranges
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.topology import FlatSection

#: Ranges printed per plan in the text (``--json`` lists all).
SHOWN_RANGES = 16


@dataclass(frozen=True, slots=True)
class RangeInputs:
    """Everything the report needs, however it was obtained."""

    source: str
    mtree_text: str
    #: the view of address space ``memory`` in ``mtree_text``; None: no view lists it
    sections: tuple[FlatSection, ...] | None
    version: QemuVersion
    version_source: str
    owners: tuple[str, ...]
    owners_source: str


@dataclass(frozen=True, slots=True)
class IovaRange:
    iova: int
    length: int


@dataclass(frozen=True, slots=True)
class QemuRange:
    """One of QEMU's ranges: its bucket (32, 64, pci64) and the sections in it."""

    bucket: str
    iova: int
    length: int
    sections: tuple[str, ...]


R = TypeVar("R", QemuRange, IovaRange)


@dataclass(frozen=True, slots=True)
class Cover(Generic[R]):
    """A set of ranges, the bytes they cover and the excess over the optimal plan."""

    ranges: tuple[R, ...]
    covered_bytes: int
    excess_bytes: int


@dataclass(frozen=True, slots=True)
class KernelCheck:
    """Whether the kernel accepts QEMU's ranges as they are (``ranges.check_kernel``)."""

    ok: bool
    errno: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A flat-view section QEMU leaves out of the ranges, and why."""

    name: str
    start: int
    end: int
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class RangesReport:
    """The whole answer; ``--json`` prints exactly these fields."""

    source: str
    qemu_version: str
    qemu_version_source: str
    page_size: int
    max_ranges: int
    vfio_owners: tuple[str, ...]
    vfio_owners_source: str
    sections: int
    mapped_bytes: int
    qemu: Cover[QemuRange]
    kernel_check: KernelCheck
    kernel_combined: Cover[IovaRange] | None  # None: the kernel refuses QEMU's ranges
    optimal: Cover[IovaRange]
    skipped: tuple[Skipped, ...]
    notes: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def build_report(inputs: RangeInputs, sections: Sequence[FlatSection], budget: int,
                 page_size: int) -> RangesReport:
    """QEMU's ranges over ``sections`` (the flat view "memory"), the kernel's verdict and
    combining to ``budget`` ranges, and the optimal plan for that budget."""
    qemu = predict_ranges(sections, frozenset(inputs.owners), inputs.version, page_size)
    mapped = [m.span for m in qemu.mappings]
    verdict = check_kernel(qemu.spans, page_size)
    combined = kernel_combine(qemu.spans, budget) if verdict.ok else None
    optimal = optimal_plan(mapped, budget)
    best = covered_bytes(optimal)
    return RangesReport(
        source=inputs.source, qemu_version=".".join(map(str, inputs.version)),
        qemu_version_source=inputs.version_source, page_size=page_size, max_ranges=budget,
        vfio_owners=inputs.owners, vfio_owners_source=inputs.owners_source,
        sections=len(sections), mapped_bytes=covered_bytes(normalise(mapped)),
        qemu=Cover(tuple(QemuRange(r.bucket, r.iova, r.length,
                                   tuple(m.section.name for m in r.sections))
                         for r in qemu.ranges), *_cover(qemu.spans, best)),
        kernel_check=KernelCheck(verdict.ok, verdict.errno, verdict.reason),
        kernel_combined=None if combined is None else _plan(combined, best),
        optimal=_plan(optimal, best),
        skipped=tuple(Skipped(s.section.name, s.section.start, s.section.end, s.section.kind,
                              s.reason) for s in qemu.skipped),
        notes=(*qemu.notes, *_owner_notes(inputs)),
    )


def _plan(spans: Sequence[Span], best: int) -> Cover[IovaRange]:
    return Cover(tuple(IovaRange(iova, length) for iova, length in spans), *_cover(spans, best))


def _cover(spans: Sequence[Span], best: int) -> tuple[int, int]:
    covered = covered_bytes(spans)
    return covered, covered - best


def _owner_notes(inputs: RangeInputs) -> list[str]:
    notes = []
    if not inputs.owners:
        notes.append("no vfio-pci device: every section is bucketed by address (32/64)")
    if "owner:{" not in inputs.mtree_text and " orphan" not in inputs.mtree_text:
        notes.append("the text has no owners (made without -o?): pci64 cannot be predicted")
    return notes


def human(report: RangesReport) -> str:
    """The report as text."""
    k, qemu, check = report.max_ranges, report.qemu, report.kernel_check
    lines = [
        f"{report.source}: QEMU {report.qemu_version} ({report.qemu_version_source}), "
        f"host page {report.page_size:#x}",
        f"  flat view \"memory\": {report.sections} sections, {len(report.skipped)} "
        f"skipped, {_size(report.mapped_bytes)} mapped",
        f"  vfio-pci owners: {', '.join(report.vfio_owners) or '-'} "
        f"({report.vfio_owners_source})",
        "",
        f"QEMU at log start (vfio_dirty_tracking_init): {_summary(qemu)}",
    ]
    lines += [f"  {r.bucket:<6}{_span(r.iova, r.length)}  {len(r.sections)} "
              f"section(s): {_names(r.sections)}" for r in qemu.ranges]
    lines.append(f"  kernel: {'OK' if check.ok else check.errno}: {check.reason}")
    for title, plan in ((f"kernel combine to K={k} (vfio_combine_iova_ranges)",
                         report.kernel_combined),
                        (f"optimal plan for K={k} over the mapped sections", report.optimal)):
        if plan is None:
            lines += ["", f"{title}: not reached, the kernel refuses QEMU's ranges"]
            continue
        lines += ["", f"{title}: {_summary(plan)}"]
        lines += [f"        {_span(r.iova, r.length)}" for r in plan.ranges[:SHOWN_RANGES]]
        if len(plan.ranges) > SHOWN_RANGES:
            lines.append(f"        ... {len(plan.ranges) - SHOWN_RANGES} more (--json lists all)")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


def _summary(part: Cover[QemuRange] | Cover[IovaRange]) -> str:
    return (f"{len(part.ranges)} range(s), {_size(part.covered_bytes)} covered, "
            f"+{_size(part.excess_bytes)} over optimal")


def _span(iova: int, length: int) -> str:
    return f"{iova:#018x}-{iova + length - 1:#018x} {_size(length):>10}"


def _names(names: Sequence[str], limit: int = 4) -> str:
    unique = list(dict.fromkeys(names))
    more = f" +{len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"~{value:.2f} {unit}"
    return f"{n} B"
