#!/usr/bin/env python3
"""Record what ``gather_topology`` asks a real QEMU and what QEMU answers.

Not part of the test suite: run it by hand when the QEMU the project targets changes,
then re-run ``tests/unit/test_topology_translate.py`` and
``tests/adapters/test_topology_gather.py``, which replay the files::

    .venv/bin/python tests/data/topology/record_topology.py   # writes tests/data/topology/

For each scenario below it starts ``qemu-system-x86_64 -accel tcg`` (no guest, no
root), runs ``gather_topology`` through a session that logs every command, and
writes ``<scenario>.json``:

* ``qemu``, ``argv``, ``device_types``: what ran. ``virtio-net-pci`` stands in for
  VFIO devices (this machine has none), so the transcript holds QEMU's genuine
  "Property ... not found" errors for every VFIO property;
* ``transcript``: ``[{"execute", "arguments", "return" | "error": {"class", "desc"}}]``
  in the order the commands were sent;
* ``objects``: for every object the gatherer read, every non-child property as
  ``{"name", "type", "value"}`` (``qom-list`` + ``qom-get``; ``value`` left out when
  unreadable): the shape of a QEMU 10.1 ``qom-list-get`` result, recorded on 10.0;
* ``vfio_pci_properties``: ``device-list-properties vfio-pci`` (names, types, defaults
  of the VFIO properties; no VFIO hardware is needed for that).

``-object iommufd`` needs no ``/dev/iommu`` until a device uses it, so a real
``child<iommufd>`` is recorded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from qmpdirty.config.address import QmpAddress  # noqa: E402
from qmpdirty.errors import QmpCommandError  # noqa: E402
from qmpdirty.facts.topology import VFIO_TYPES  # noqa: E402
from qmpdirty.qmp.commands import CommandPolicy  # noqa: E402
from qmpdirty.qmp.gather import gather_topology  # noqa: E402
from qmpdirty.qmp.session import QmpSession  # noqa: E402

OUT = Path(__file__).resolve().parent
STAND_INS = frozenset({"virtio-net-pci"})
BASE = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none"]


def scenarios(fat_dir: Path) -> dict[str, list[str]]:
    """name -> QEMU arguments (after ``BASE``)."""
    return {
        # prelaunch: intel-iommu, a bypassing pxb-pcie, stand-ins on three buses,
        # virtio-mem, and a read-write vvfat drive (a non-VFIO migration blocker)
        "q35-intel-pxb": [
            "-S", "-machine", "q35", "-m", "256M,maxmem=1G,slots=2",
            "-device", "intel-iommu,caching-mode=on,aw-bits=48",
            "-device", "pxb-pcie,id=pxb1,bus_nr=10,bypass_iommu=true",
            "-device", "pcie-root-port,id=rp1,bus=pxb1,chassis=1",
            "-device", "virtio-net-pci,id=nic1,bus=rp1",
            "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=2",
            "-device", "virtio-net-pci,id=nic0,bus=rp0",
            "-device", "virtio-net-pci,bus=pcie.0",
            "-object", "memory-backend-ram,id=mem1,size=512M",
            "-object", "iommufd,id=iommufd0",
            "-device", "virtio-mem-pci,memdev=mem1,id=vmem0,requested-size=128M,bus=pcie.0",
            "-drive", f"file=fat:rw:{fat_dir},format=raw,if=none,id=v0",
            "-device", "virtio-blk-pci,drive=v0,id=blk0,bus=pcie.0",
        ],
        # running firmware (SeaBIOS assigns BARs), virtio-iommu, main bus bypassing
        "q35-virtio-iommu-firmware": [
            "-machine", "q35,default-bus-bypass-iommu=on", "-m", "256",
            "-device", "virtio-iommu-pci,id=viommu0",
            "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1",
            "-device", "virtio-net-pci,id=nic0,bus=rp0",
            "-device", "virtio-net-pci,bus=pcie.0",
        ],
    }


class RecordingSession(QmpSession):
    """A QmpSession that logs each command and its reply or error."""

    transcript: list[dict[str, Any]]

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None,
                      timeout_s: float | None = None) -> object:
        entry: dict[str, Any] = {"execute": command, "arguments": dict(arguments or {})}
        self.transcript.append(entry)
        try:
            entry["return"] = await super().execute(command, arguments, timeout_s)
        except QmpCommandError as exc:
            entry["error"] = {"class": exc.error_class, "desc": exc.desc}
            raise
        return entry["return"]


async def object_properties(session: QmpSession, path: str) -> list[dict[str, Any]]:
    """Every non-child property of ``path`` with its value, like ``qom-list-get``."""
    listing = await session.execute("qom-list", {"path": path})
    assert isinstance(listing, list)
    result = []
    for prop in listing:
        if prop["type"].startswith("child<"):
            continue
        item = {"name": prop["name"], "type": prop["type"]}
        with contextlib.suppress(QmpCommandError):  # unreadable: no value, as qom-list-get
            item["value"] = await session.execute(
                "qom-get", {"path": path, "property": prop["name"]})
        result.append(item)
    return result


async def record(socket_path: Path, firmware: bool) -> dict[str, Any]:
    session = await RecordingSession.open(
        QmpAddress("unix", socket_path), policy=CommandPolicy(), command_timeout_s=10,
        connect_timeout_s=10, event_queue_size=100, label="record")
    assert isinstance(session, RecordingSession)
    session.transcript = []
    try:
        if firmware:
            await wait_for_bars(session)
        session.transcript = []
        await gather_topology(session, device_types=VFIO_TYPES | STAND_INS)
        transcript, session.transcript = session.transcript, []
        read = sorted({e["arguments"]["path"] for e in transcript
                       if e["execute"] == "qom-get" and e["arguments"]["path"] != "/machine"})
        objects = {path: await object_properties(session, path) for path in read}
        vfio_pci = await session.execute("device-list-properties", {"typename": "vfio-pci"})
        return {"transcript": transcript, "objects": objects, "vfio_pci_properties": vfio_pci}
    finally:
        await session.close()


async def wait_for_bars(session: QmpSession, timeout_s: float = 20.0) -> None:
    """Until the firmware has assigned at least one memory BAR."""
    def assigned(devices: list[dict[str, Any]]) -> bool:
        return any(
            any(r["type"] == "memory" and r["address"] != -1 for r in d["regions"])
            or assigned(d.get("pci_bridge", {}).get("devices", []))
            for d in devices
        )

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        buses = await session.execute("query-pci")
        assert isinstance(buses, list)
        if any(assigned(bus["devices"]) for bus in buses):
            await asyncio.sleep(1.0)  # let it finish the other devices
            return
        await asyncio.sleep(0.2)
    raise SystemExit("firmware assigned no BARs in time")


def main() -> None:
    version = subprocess.run([BASE[0], "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory(prefix="qd-rec-", dir="/tmp") as tmp:
        fat = Path(tmp) / "fat"
        fat.mkdir()
        (fat / "hello.txt").write_text("hello\n")
        for name, args in scenarios(fat).items():
            sock = Path(tmp) / f"{name}.sock"
            argv = [*BASE, *args, "-qmp", f"unix:{sock},server=on,wait=off"]
            qemu = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
            try:
                while not sock.exists():
                    time.sleep(0.05)
                data = asyncio.run(record(sock, firmware="-S" not in args))
            finally:
                qemu.kill()
                qemu.wait()
            shown = [a.replace(tmp, "/tmp/FAT") for a in args]
            doc = {"qemu": version, "argv": shown,
                   "device_types": sorted(VFIO_TYPES | STAND_INS), **data}
            (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{name}: {len(data['transcript'])} commands, {len(data['objects'])} objects")


if __name__ == "__main__":
    main()
