#!/usr/bin/env python3
"""Record real ``info mtree -f -o`` outputs from the installed QEMU into this directory.

Not part of the test suite: run it by hand when the QEMU the project targets changes,
then re-derive the expected numbers in ``tests/unit/test_ranges.py`` by reading the
new text (the tests must not compute them with the code under test)::

    .venv/bin/python tests/data/mtree/record.py            # writes tests/data/mtree/
    .venv/bin/python tests/data/mtree/record.py --out DIR  # somewhere else

Each recording starts a lab QEMU (``qmpdirty.demo.lab.qemu.QemuVm``, TCG) and reads the
flat view through the lab's own QMP client (``QmpControl``). Layouts that need no
firmware are taken at once under ``-S``; the one with PCI BARs lets SeaBIOS program
them, waits for the lab guest's ready line, then ``stop``s the VM before reading.
``index.json`` lists every file with the QEMU version and the extra arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from qmpdirty.demo.lab.control import QmpControl  # noqa: E402
from qmpdirty.demo.lab.guest import ensure_guest  # noqa: E402
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm  # noqa: E402


@dataclass(frozen=True)
class Recording:
    """One layout: file name, guest RAM (MiB), extra QEMU arguments, firmware or -S."""

    name: str
    mem_mib: int
    args: tuple[str, ...]
    firmware: bool = False


RECORDINGS = (
    # 1 GiB below 4 GiB (max-ram-below-4g), the other 1 GiB at 4 GiB.
    Recording("q35-highram.txt", 2048, ("-M", "q35,max-ram-below-4g=1G")),
    # i440fx with 3.5 GiB: 3 GiB below the PCI hole (gigabyte_align), 512 MiB above.
    Recording("pc-3584.txt", 3584, ("-M", "pc")),
    # virtio-mem: its whole 1 GiB device region, though nothing is plugged.
    Recording("q35-virtio-mem.txt", 2048, (
        "-M", "q35,max-ram-below-4g=1G", "-m", "2048,maxmem=8G",
        "-object", "memory-backend-ram,id=vmem0,size=1G",
        "-device", "virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0")),
    # RAM BARs placed by SeaBIOS: VGA vram (32-bit BAR) and a 2 GiB ivshmem BAR2 that
    # only fits in the 64-bit window.
    Recording("q35-vga-ivshmem.txt", 1024, (
        "-M", "q35", "-device", "VGA,id=vga0",
        "-object", "memory-backend-ram,id=shmbig,size=2G,share=on",
        "-device", "ivshmem-plain,id=shm,memdev=shmbig"), firmware=True),
)


def record(recording: Recording, guest_dir: Path) -> tuple[str, str]:
    """Start the layout, return (QEMU version, ``info mtree -f -o`` text)."""
    guest = ensure_guest(guest_dir)
    sock = Path(tempfile.mkdtemp(prefix="qd-mtree-", dir="/tmp")) / "qmp.sock"
    extra = recording.args if recording.firmware else ("-S", *recording.args)
    spec = QemuSpec(name="mtree", mem_mib=recording.mem_mib, qmp_servers=(sock,),
                    extra_args=extra)
    with QemuVm(spec, guest) as vm:
        if recording.firmware:
            vm.wait_ready(120)
        else:
            vm.wait_qmp()
        with QmpControl(sock) as control:
            if recording.firmware:
                control.cmd("stop")
            version = control.cmd("query-version")
            text = control.cmd("human-monitor-command", **{"command-line": "info mtree -f -o"})
    assert isinstance(version, dict) and isinstance(text, str)
    qemu = version["qemu"]
    return f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}", text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    guest_dir = Path(os.environ.get("QMPDIRTY_GUEST_DIR", ROOT / ".cache" / "guest"))
    index = []
    for recording in RECORDINGS:
        version, text = record(recording, guest_dir)
        (args.out / recording.name).write_text(text)
        index.append({"file": recording.name, "qemu": version, "mem_mib": recording.mem_mib,
                      "args": list(recording.args), "firmware_ran": recording.firmware})
        print(f"{recording.name}: QEMU {version}, {len(text.splitlines())} lines")
    (args.out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
