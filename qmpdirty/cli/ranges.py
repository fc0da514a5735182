"""``qmpdirty ranges``: the DMA-logging IOVA ranges of one VM, explained (shell).

Stage: shell. Reads ``info mtree -f -o`` from a file or from a live QEMU (read-only
session: queries plus that one HMP line), then hands everything to the pure core
(``qmp/mtree``, ``decisions/ranges``, ``decisions/planner``) and prints the result.
It must not send anything that changes the VM, and it does not pick the event loop
(``cli.run_loop`` is passed in).

What it prints, for a range budget K (``--max-ranges``, default the kernel's
LOG_MAX_RANGES, one page of ranges):

* QEMU's ranges as ``vfio_dirty_tracking_init`` computes them when logging starts;
* those ranges after the kernel's ``vfio_combine_iova_ranges`` to K (what mlx5/pds
  track when the device takes fewer ranges than QEMU sends);
* the optimal K ranges over the sections QEMU actually maps (the lower bound);
each with covered bytes and the excess over the optimum. The CLI treats every
vfio-pci device it finds as one container (QEMU shares one container per address
space when it can); pass ``--vfio-owner`` to model another grouping.
"""

from __future__ import annotations

import json
import mmap
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmpdirty.cli.common import READ_ONLY, Runner
from qmpdirty.config import QmpConfig
from qmpdirty.config.address import QmpAddress, parse_qmp_address
from qmpdirty.decisions.vfio.planner import (
    Span,
    covered_bytes,
    kernel_combine,
    normalise,
    optimal_plan,
)
from qmpdirty.decisions.vfio.ranges import DirtyRanges, check_kernel, log_max_ranges, predict_ranges
from qmpdirty.errors import QmpCommandError, QmpDirtyError, QmpReplyError
from qmpdirty.facts.qemu import ASSUMED_FOR_FILES, QemuVersion
from qmpdirty.facts.topology import VFIO_PCI_TYPES
from qmpdirty.qmp import queries
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology.mtree import flat_view_for

MTREE = {"command-line": "info mtree -f -o"}
#: Where ``-device`` puts devices: by id, and anonymous ones as ``device[N]``.
PERIPHERALS = ("/machine/peripheral", "/machine/peripheral-anon")
#: Assumed for ``--mtree`` without ``--qemu-version``: the newest tree the reference read.
SHOWN_RANGES = 16


class UsageError(ValueError):
    """A bad argument or input file (exit 2)."""


@dataclass(frozen=True, slots=True)
class RangeInputs:
    """Everything the report needs, however it was obtained."""

    source: str
    mtree_text: str
    version: QemuVersion
    version_source: str
    owners: tuple[str, ...]
    owners_source: str


def parse_version(text: str) -> QemuVersion:
    """``X.Y`` or ``X.Y.Z`` -> (X, Y, Z)."""
    parts = text.split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--qemu-version {text!r}: write X.Y or X.Y.Z, e.g. 10.0 or 10.0.2")
    major, minor, *micro = (int(p) for p in parts)
    return (major, minor, micro[0] if micro else 0)


def owners_from_qom(listings: Sequence[tuple[str, object]]) -> tuple[str, ...]:
    """vfio-pci owners from ``qom-list`` replies of the peripheral containers, spelled as
    ``info mtree -o`` prints them: the id under ``/machine/peripheral``, else the path."""
    owners: list[str] = []
    for parent, reply in listings:
        for child in reply if isinstance(reply, list) else []:
            name, kind = (child.get("name"), child.get("type")) if isinstance(
                child, dict) else (None, None)
            if not isinstance(name, str) or not isinstance(kind, str):
                continue
            if kind.removeprefix("child<").removesuffix(">") in VFIO_PCI_TYPES:
                owners.append(name if parent == PERIPHERALS[0] else f"{parent}/{name}")
    return tuple(owners)


async def read_vm(address: QmpAddress, owners: tuple[str, ...],
                  version: QemuVersion | None) -> RangeInputs:
    """``query-version``, ``info mtree -f -o`` and (unless given) the vfio-pci owners."""
    qmp = QmpConfig()
    session = await QmpSession.open(
        address, policy=READ_ONLY, command_timeout_s=qmp.command_timeout_s,
        connect_timeout_s=qmp.connect_timeout_s, event_queue_size=10, label=str(address),
    )
    try:
        reported = await queries.qemu_version(session)
        text = await session.execute("human-monitor-command", MTREE)
        found = owners or owners_from_qom([
            (parent, await _qom_list(session, parent)) for parent in PERIPHERALS])
    finally:
        await session.close()
    if not isinstance(text, str):
        raise QmpReplyError(f"human-monitor-command: expected text, got {type(text).__name__}")
    return RangeInputs(
        str(address), text,
        version or reported, "--qemu-version" if version else "query-version",
        found, "--vfio-owner" if owners else "qom-list",
    )


async def _qom_list(session: QmpSession, path: str) -> object:
    try:
        return await session.execute("qom-list", {"path": path})
    except QmpCommandError:  # the container does not exist: no device there
        return []


def read_file(path: Path, owners: tuple[str, ...], version: QemuVersion | None) -> RangeInputs:
    """The recorded ``info mtree -f -o`` text of ``path``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"--mtree {path}: {exc.strerror or exc}") from exc
    return RangeInputs(
        str(path), text, version or ASSUMED_FOR_FILES,
        "--qemu-version" if version else "assumed (pass --qemu-version)",
        owners, "--vfio-owner" if owners else "none given",
    )


def build_report(inputs: RangeInputs, k: int | None, page_size: int) -> dict[str, Any]:
    """The whole answer as one JSON-able object (``--json`` prints exactly this)."""
    sections = flat_view_for(inputs.mtree_text, "memory")
    if sections is None:
        raise UsageError(f"{inputs.source}: no flat view lists address space \"memory\"; "
                         "is this the output of `info mtree -f -o`?")
    budget = k if k is not None else log_max_ranges(page_size)
    qemu = predict_ranges(sections, frozenset(inputs.owners), inputs.version, page_size)
    mapped = [m.span for m in qemu.mappings]
    verdict = check_kernel(qemu.spans, page_size)
    combined = kernel_combine(qemu.spans, budget) if verdict.ok else None
    optimal = optimal_plan(mapped, budget)
    best = covered_bytes(optimal)
    return {
        "source": inputs.source, "qemu_version": ".".join(map(str, inputs.version)),
        "qemu_version_source": inputs.version_source, "page_size": page_size,
        "max_ranges": budget, "vfio_owners": list(inputs.owners),
        "vfio_owners_source": inputs.owners_source, "sections": len(sections),
        "mapped_bytes": covered_bytes(normalise(mapped)),
        "qemu": {**_qemu_ranges(qemu), **_cover(qemu.spans, best)},
        "kernel_check": {"ok": verdict.ok, "errno": verdict.errno, "reason": verdict.reason},
        "kernel_combined": None if combined is None else {
            "ranges": _plain(combined), **_cover(combined, best)},
        "optimal": {"ranges": _plain(optimal), **_cover(optimal, best)},
        "skipped": [{"name": s.section.name, "start": s.section.start, "end": s.section.end,
                     "kind": s.section.kind, "reason": s.reason} for s in qemu.skipped],
        "notes": [*qemu.notes, *_owner_notes(inputs)],
    }


def _qemu_ranges(qemu: DirtyRanges) -> dict[str, Any]:
    return {"ranges": [
        {"bucket": r.bucket, "iova": r.iova, "length": r.length,
         "sections": [m.section.name for m in r.sections]} for r in qemu.ranges]}


def _cover(spans: Sequence[Span], best: int) -> dict[str, int]:
    covered = covered_bytes(spans)
    return {"covered_bytes": covered, "excess_bytes": covered - best}


def _plain(spans: Sequence[Span]) -> list[dict[str, int]]:
    return [{"iova": iova, "length": length} for iova, length in spans]


def _owner_notes(inputs: RangeInputs) -> list[str]:
    notes = []
    if not inputs.owners:
        notes.append("no vfio-pci device: every section is bucketed by address (32/64)")
    if "owner:{" not in inputs.mtree_text and " orphan" not in inputs.mtree_text:
        notes.append("the text has no owners (made without -o?): pci64 cannot be predicted")
    return notes


def human(report: dict[str, Any]) -> str:
    """A readable rendering of ``build_report``'s object."""
    k, qemu = report["max_ranges"], report["qemu"]
    lines = [
        f"{report['source']}: QEMU {report['qemu_version']} ({report['qemu_version_source']}), "
        f"host page {report['page_size']:#x}",
        f"  flat view \"memory\": {report['sections']} sections, {len(report['skipped'])} "
        f"skipped, {_size(report['mapped_bytes'])} mapped",
        f"  vfio-pci owners: {', '.join(report['vfio_owners']) or '-'} "
        f"({report['vfio_owners_source']})",
        "",
        f"QEMU at log start (vfio_dirty_tracking_init): {_summary(qemu)}",
    ]
    lines += [f"  {r['bucket']:<6}{_span(r['iova'], r['length'])}  {len(r['sections'])} "
              f"section(s): {_names(r['sections'])}" for r in qemu["ranges"]]
    check = report["kernel_check"]
    lines.append(f"  kernel: {'OK' if check['ok'] else check['errno']}: {check['reason']}")
    for title, key in ((f"kernel combine to K={k} (vfio_combine_iova_ranges)", "kernel_combined"),
                       (f"optimal plan for K={k} over the mapped sections", "optimal")):
        if report[key] is None:
            lines += ["", f"{title}: not reached, the kernel refuses QEMU's ranges"]
            continue
        lines += ["", f"{title}: {_summary(report[key])}"]
        shown = report[key]["ranges"]
        lines += [f"        {_span(r['iova'], r['length'])}" for r in shown[:SHOWN_RANGES]]
        if len(shown) > SHOWN_RANGES:
            lines.append(f"        ... {len(shown) - SHOWN_RANGES} more (--json lists all)")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def _summary(part: dict[str, Any]) -> str:
    return (f"{len(part['ranges'])} range(s), {_size(part['covered_bytes'])} covered, "
            f"+{_size(part['excess_bytes'])} over optimal")


def _span(iova: int, length: int) -> str:
    return f"{iova:#018x}-{iova + length - 1:#018x} {_size(length):>10}"


def _names(names: list[str], limit: int = 4) -> str:
    unique = list(dict.fromkeys(names))
    more = f" +{len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"~{value:.2f} {unit}"
    return f"{n} B"


def ranges_command(
    *, mtree: Path | None, qmp: str | None, max_ranges: int | None, as_json: bool,
    vfio_owners: Sequence[str], qemu_version: str | None, run: Runner,
) -> int:
    """``qmpdirty ranges``: 0 printed, 1 QEMU unreachable or failing, 2 bad arguments."""
    owners = tuple(dict.fromkeys(vfio_owners))
    try:
        if max_ranges is not None and max_ranges < 1:
            raise UsageError(f"--max-ranges {max_ranges}: at least 1")
        version = parse_version(qemu_version) if qemu_version else None
        address = _address(qmp) if qmp else None
        inputs = (run(read_vm(address, owners, version)) if address is not None
                  else read_file(mtree or Path(), owners, version))
        report = build_report(inputs, max_ranges, mmap.PAGESIZE)
    except UsageError as exc:
        print(f"ranges: {exc}", file=sys.stderr)
        return 2
    except QmpDirtyError as exc:
        print(f"ranges: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else human(report))
    return 0


def _address(text: str) -> QmpAddress:
    try:
        return parse_qmp_address(text)
    except ValueError as exc:
        raise UsageError(f"--qmp: {exc}") from exc
