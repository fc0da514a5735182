"""``qmpdirty ranges``: the DMA-logging IOVA ranges of one VM, explained (shell).

Stage: shell. Reads ``info mtree -f -o`` from a file or from a live QEMU (read-only
session, through the sans-I/O ``qmp/topology/memory_view`` query: the flat view, the
version and the vfio-pci owners, parsed there), then hands everything to the pure core
(``qmp/topology/mtree``, ``decisions/vfio``, via ``ranges_report``) and prints the
report. It must not send anything that changes the VM nor interpret a reply, and it does
not pick the event loop (``cli.run_loop`` is passed in).

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

import mmap
import sys
from collections.abc import Sequence
from pathlib import Path

from qmpdirty.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, READ_ONLY, Runner
from qmpdirty.cli.ranges_report import RangeInputs, build_report, human
from qmpdirty.config.address import QmpAddress, parse_qmp_address
from qmpdirty.config.sections import QmpConfig
from qmpdirty.decisions.vfio.ranges import log_max_ranges
from qmpdirty.errors import QmpDirtyError, UsageError
from qmpdirty.facts.qemu import ASSUMED_FOR_FILES, QemuVersion
from qmpdirty.qmp import gather
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology.memory_view import MemoryViewQuery
from qmpdirty.qmp.topology.mtree import flat_view_for


def parse_version(text: str) -> QemuVersion:
    """``X.Y`` or ``X.Y.Z`` -> (X, Y, Z)."""
    parts = text.split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--qemu-version {text!r}: write X.Y or X.Y.Z, e.g. 10.0 or 10.0.2")
    major, minor, *micro = (int(p) for p in parts)
    return (major, minor, micro[0] if micro else 0)


async def read_vm(address: QmpAddress, owners: tuple[str, ...],
                  version: QemuVersion | None) -> RangeInputs:
    """``info mtree -f -o`` and, unless given, the version and the vfio-pci owners."""
    qmp = QmpConfig()
    session = await QmpSession.open(
        address, policy=READ_ONLY, command_timeout_s=qmp.command_timeout_s,
        connect_timeout_s=qmp.connect_timeout_s, event_queue_size=10, label=str(address),
    )
    try:
        read = await gather.run(session, MemoryViewQuery(version=version, vfio_owners=owners))
    finally:
        await session.close()
    return RangeInputs(
        str(address), read.mtree_text, read.sections,
        read.version, "--qemu-version" if version else "query-version",
        read.vfio_owners, "--vfio-owner" if owners else "qom-list",
    )


def read_file(path: Path, owners: tuple[str, ...], version: QemuVersion | None) -> RangeInputs:
    """The recorded ``info mtree -f -o`` text of ``path``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"--mtree {path}: {exc.strerror or exc}") from exc
    return RangeInputs(
        str(path), text, flat_view_for(text, "memory"), version or ASSUMED_FOR_FILES,
        "--qemu-version" if version else "assumed (pass --qemu-version)",
        owners, "--vfio-owner" if owners else "none given",
    )


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
        sections = inputs.sections
        if sections is None:
            raise UsageError(f"{inputs.source}: no flat view lists address space \"memory\"; "
                             "is this the output of `info mtree -f -o`?")
        budget = max_ranges if max_ranges is not None else log_max_ranges(mmap.PAGESIZE)
        report = build_report(inputs, sections, budget, mmap.PAGESIZE)
    except UsageError as exc:
        print(f"ranges: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QmpDirtyError as exc:
        print(f"ranges: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(report.to_json() if as_json else human(report))
    return EXIT_OK


def _address(text: str) -> QmpAddress:
    try:
        return parse_qmp_address(text)
    except ValueError as exc:
        raise UsageError(f"--qmp: {exc}") from exc
