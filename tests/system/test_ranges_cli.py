"""``qmpdirty ranges`` through the real console script: a live QEMU and a recorded file.

The live VM is stopped (``-S``) q35 with 1 GiB below 4 GiB and 1 GiB above
(``max-ram-below-4g=1G``) and a VGA device, so that the owner discovery runs over real
``qom-list`` replies. Expected numbers come from the layout, worked out by hand.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.cli.ranges import parse_version
from qmpdirty.demo.lab.daemon_process import QMPDIRTY, sock
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.errors import QmpReplyError
from qmpdirty.qmp.topology.exchange import drive
from qmpdirty.qmp.topology.memory_view import vfio_pci_owners
from qmpdirty.qmp.topology.query import PERIPHERALS, ListingQuery

pytestmark = pytest.mark.system
MTREE = Path(__file__).resolve().parents[1] / "data" / "mtree"
GIB = 1 << 30


def ranges(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QMPDIRTY, "ranges", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def as_json(*args: str) -> dict[str, Any]:
    result = ranges(*args, "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def pairs(part: dict[str, Any]) -> list[tuple[int, int]]:
    return [(r["iova"], r["length"]) for r in part["ranges"]]


def test_live_qemu_read_only(lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path) -> None:
    qmp = sock(tmp_path, "ranges")
    vm = lab_vm(QemuSpec(name="ranges", mem_mib=2048, qmp_servers=(qmp,), extra_args=(
        "-S", "-M", "q35,max-ram-below-4g=1G", "-device", "VGA,id=vga0")))
    vm.wait_qmp()
    report = as_json("--qmp", f"unix:{qmp}", "--max-ranges", "2")
    assert report["qemu_version"].startswith("10.")
    assert report["qemu_version_source"] == "query-version"
    assert (report["vfio_owners"], report["vfio_owners_source"]) == ([], "qom-list")
    # low: pc.ram 0-9ffff (vga-lowmem a0000-bffff is i/o), pc.rom, pc.bios, pc.ram up to
    # 3fffffff, pc.bios fffc0000-ffffffff -> 32; pc.ram 100000000-13fffffff -> 64.
    assert pairs(report["qemu"]) == [(0, 4 * GIB), (4 * GIB, GIB)]
    assert report["kernel_check"]["ok"] is True
    # best two: [0, 3fffffff] and [fffc0000, 13fffffff] (the high BIOS touches 4 GiB);
    # the 128 KiB vga-lowmem hole is the smallest gap and is covered.
    assert pairs(report["optimal"]) == [(0, GIB), (0xFFFC_0000, GIB + 0x4_0000)]
    assert report["qemu"]["excess_bytes"] == 5 * GIB - (2 * GIB + 0x4_0000)
    assert report["kernel_combined"]["excess_bytes"] == report["qemu"]["excess_bytes"]
    assert vm.returncode is None  # still there, still stopped: nothing was changed

    text = ranges("--qmp", f"unix:{qmp}")
    assert text.returncode == 0, text.stderr
    assert "vfio_dirty_tracking_init" in text.stdout and "optimal plan" in text.stdout


def test_recorded_file_with_a_vfio_owner() -> None:
    report = as_json("--mtree", str(MTREE / "q35-vga-ivshmem.txt"), "--qemu-version", "10.0",
                     "--vfio-owner", "/objects/shmbig", "--max-ranges", "1")
    assert report["qemu_version"] == "10.0.0"
    # 32: [0, ffffffff]; pci64: shmbig ff00000000-ff7fffffff (the stand-in vfio BAR).
    assert [r["bucket"] for r in report["qemu"]["ranges"]] == ["32", "pci64"]
    assert pairs(report["qemu"]) == [(0, 4 * GIB), (0xFF_0000_0000, 2 * GIB)]
    # one range: the kernel spans both, [0, ff7fffffff]
    assert pairs(report["kernel_combined"]) == [(0, 0xFF_8000_0000)]
    assert pairs(report["optimal"]) == [(0, 0xFF_8000_0000)]
    assert report["kernel_combined"]["excess_bytes"] == 0


def test_unreachable_qemu_exits_1(tmp_path: Path) -> None:
    result = ranges("--qmp", f"unix:{tmp_path / 'absent.sock'}")
    assert result.returncode == 1
    assert "absent.sock" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ("--mtree", "/nonexistent/mtree.txt"),
    ("--mtree", str(MTREE / "index.json")),
    ("--mtree", str(MTREE / "pc-3584.txt"), "--qemu-version", "ten"),
    ("--mtree", str(MTREE / "pc-3584.txt"), "--max-ranges", "0"),
    ("--mtree", str(MTREE / "pc-3584.txt"), "--qmp", "unix:/x.sock"),
    ("--qmp", "udp:host:1"),
    (),
])
def test_bad_arguments_exit_2(args: tuple[str, ...]) -> None:
    result = ranges(*args)
    assert result.returncode == 2, result.stdout
    assert result.stderr and "Traceback" not in result.stderr


OVERLAPPING = """FlatView #0
 AS "memory", root: system
 Root memory region: system
  0000000000000000-000000007fffffff (prio 0, ram): pc.ram owner:{obj path=/objects/pc.ram}
  0000000100000000-000000017fffffff (prio 0, ram): ram @0000000080000000 owner:{obj path=/m}
  0000008000000000-0000008001ffffff (prio 0, ramd): 0000:3b:00.1 BAR 0 mmaps[0] owner:{dev id=hd0}
  0000010000000000-000001000fffffff (prio 1, ram): ivshmem.bar2 owner:{obj path=/objects/shm}
"""


def test_overlapping_64_and_pci64_are_reported_not_combined(tmp_path: Path) -> None:
    mtree = tmp_path / "overlap.txt"
    mtree.write_text(OVERLAPPING)
    args = ("--mtree", str(mtree), "--vfio-owner", "hd0", "--qemu-version", "10.2")
    report = as_json(*args)
    # 64 spans pc.ram at 4 GiB to the RAM BAR at 1 TiB, over the vfio BAR at 512 GiB.
    assert pairs(report["qemu"]) == [(0, 2 * GIB), (4 * GIB, 0x100_1000_0000 - 4 * GIB),
                                     (0x80_0000_0000, 0x200_0000)]
    assert report["kernel_check"]["errno"] == "EINVAL"
    assert report["kernel_combined"] is None
    text = ranges(*args)
    assert text.returncode == 0 and "not reached" in text.stdout


def test_owner_discovery_spells_owners_as_mtree_prints_them() -> None:
    # qom-list replies as QEMU gives them: id-named children, anonymous device[N]
    replies: dict[object, object] = {
        "/machine/peripheral": [{"name": "type", "type": "string"},
                                {"name": "hostdev0", "type": "child<vfio-pci>"},
                                {"name": "vga0", "type": "child<VGA>"}],
        "/machine/peripheral-anon": [{"name": "device[0]", "type": "child<vfio-pci-nohotplug>"}],
    }

    def answer(_command: str, arguments: Mapping[str, object] | None) -> object:
        return replies[(arguments or {})["path"]]

    listed = drive(ListingQuery(PERIPHERALS), answer)
    assert vfio_pci_owners(c for name in PERIPHERALS for c in listed[name]) == (
        "hostdev0", "/machine/peripheral-anon/device[0]")
    replies["/machine/peripheral"] = {"not": "a list"}  # validated like every reply
    with pytest.raises(QmpReplyError, match="qom-list /machine/peripheral"):
        drive(ListingQuery(PERIPHERALS), answer)
    assert parse_version("10.0") == (10, 0, 0) and parse_version("8.2.1") == (8, 2, 1)
