"""Record a real QEMU's QMP replies and events for the fake fleet's VMs (``RecordedVm``).

Run once by hand, when the QEMU the project targets changes::

    .venv/bin/python -m bench.record_qmp    # writes qmpdirty/demo/lab/data/qemu-<version>.json

It boots the lab guest (``qmpdirty.demo.lab``, TCG) on a libvirt-like q35 machine (four
PCIe root ports with virtio-net, virtio-balloon, virtio-rng and virtio-serial), asks
every command the daemon sends and stores each ``return`` (or error) verbatim; then
it records STOP/RESUME, a page-sampling dirty-rate measurement and a bandwidth-limited
migration to ``exec:cat > /dev/null`` (events plus ``query-migrate`` snapshots while
it runs). The fake fleet replays these, changing only names, uuids and timestamps.
It also keeps the argument types of the events the fake synthesises (RTC_CHANGE,
NIC_RX_FILTER_CHANGED) from ``query-qmp-schema``, to check their shape.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.control import LabCommandError, QmpControl
from qmpdirty.demo.lab.guest import ensure_guest
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorded import DATA as RECORDING

ROOT = Path(__file__).resolve().parent.parent
DATA = RECORDING.parent
MIB = 2**20

#: A libvirt-style q35 machine: devices behind PCIe root ports.
MACHINE_ARGS = (
    "-machine", "q35",
    "-device", "pcie-root-port,id=pci.1,chassis=1,port=0x10,bus=pcie.0,multifunction=on,addr=0x2",
    "-device", "pcie-root-port,id=pci.2,chassis=2,port=0x11,bus=pcie.0,addr=0x2.0x1",
    "-device", "pcie-root-port,id=pci.3,chassis=3,port=0x12,bus=pcie.0,addr=0x2.0x2",
    "-device", "pcie-root-port,id=pci.4,chassis=4,port=0x13,bus=pcie.0,addr=0x2.0x3",
    "-netdev", "user,id=hostnet0",
    "-device", "virtio-net-pci,netdev=hostnet0,id=net0,bus=pci.1,addr=0x0",
    "-device", "virtio-balloon-pci,id=balloon0,bus=pci.2,addr=0x0",
    "-object", "rng-random,id=objrng0,filename=/dev/urandom",
    "-device", "virtio-rng-pci,rng=objrng0,id=rng0,bus=pci.3,addr=0x0",
    "-device", "virtio-serial-pci,id=virtio-serial0,bus=pci.4,addr=0x0",
)

#: (label, command, arguments): the queries the daemon sends, asked of the idle VM.
QUERIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("query-version", "query-version", {}),
    ("query-name", "query-name", {}),
    ("query-uuid", "query-uuid", {}),
    ("query-kvm", "query-kvm", {}),
    ("query-cpus-fast", "query-cpus-fast", {}),
    ("query-memory-size-summary", "query-memory-size-summary", {}),
    ("qom-get:/machine:type", "qom-get", {"path": "/machine", "property": "type"}),
    ("qom-get:/machine:iommu", "qom-get", {"path": "/machine", "property": "iommu"}),
    ("query-migrate-capabilities", "query-migrate-capabilities", {}),
    ("query-migrate-parameters", "query-migrate-parameters", {}),
    ("query-migrate", "query-migrate", {}),
    ("query-dirty-rate", "query-dirty-rate", {"calc-time-unit": "millisecond"}),
    ("qom-list:/machine/peripheral", "qom-list", {"path": "/machine/peripheral"}),
    ("qom-list:/machine/peripheral-anon", "qom-list", {"path": "/machine/peripheral-anon"}),
    ("qom-list:/machine/unattached", "qom-list", {"path": "/machine/unattached"}),
    ("qom-list:/objects", "qom-list", {"path": "/objects"}),
    ("query-pci", "query-pci", {}),
    ("query-memory-devices", "query-memory-devices", {}),
    ("mtree", "human-monitor-command", {"command-line": "info mtree -f -o"}),
)
SYNTHESISED_EVENTS = ("RTC_CHANGE", "NIC_RX_FILTER_CHANGED")


def ask(control: QmpControl, command: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``{"return": ...}`` or ``{"error": {"class", "desc"}}``, as QEMU answered."""
    try:
        return {"return": control.cmd(command, **arguments)}
    except LabCommandError as exc:
        return {"error": {"class": exc.error_class, "desc": exc.desc}}


def event_members(schema: list[dict[str, Any]], event: str) -> list[str]:
    """The argument names of ``event`` in ``query-qmp-schema`` (its shape, for checks)."""
    by_name = {entry["name"]: entry for entry in schema}
    found = next((e for e in schema if e.get("meta-type") == "event" and e["name"] == event),
                 None)
    if found is None:
        return []
    return [m["name"] for m in by_name[found["arg-type"]].get("members", [])]


def record_idle(control: QmpControl) -> dict[str, Any]:
    """Every query of ``QUERIES`` plus the run states, the events-on capability list and
    one page-sampling measurement (measuring, then measured)."""
    replies = {label: ask(control, cmd, args) for label, cmd, args in QUERIES}
    replies["query-status:running"] = ask(control, "query-status", {})
    control.cmd("stop")
    replies["query-status:paused"] = ask(control, "query-status", {})
    control.cmd("cont")
    replies["migrate-set-capabilities"] = ask(
        control, "migrate-set-capabilities",
        {"capabilities": [{"capability": "events", "state": True}]})
    replies["query-migrate-capabilities:events-on"] = ask(
        control, "query-migrate-capabilities", {})
    replies["calc-dirty-rate"] = ask(control, "calc-dirty-rate", {
        "calc-time": 500, "calc-time-unit": "millisecond", "mode": "page-sampling",
        "sample-pages": 16384})
    replies["query-dirty-rate:measuring"] = ask(control, "query-dirty-rate",
                                                {"calc-time-unit": "millisecond"})
    time.sleep(1.0)
    replies["query-dirty-rate:measured"] = ask(control, "query-dirty-rate",
                                               {"calc-time-unit": "millisecond"})
    return replies


def record_migration(control: QmpControl) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A slowed migration to ``exec:``: its ``query-migrate`` snapshots and all events."""
    control.cmd("migrate-set-parameters", **{"max-bandwidth": 16 * MIB})
    control.cmd("migrate", uri="exec:cat > /dev/null")
    snapshots = []
    for _ in range(8):
        time.sleep(0.5)
        snapshots.append(control.cmd("query-migrate"))
    control.cmd("migrate-set-parameters", **{"max-bandwidth": 4096 * MIB})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = control.cmd("query-migrate")
        if isinstance(last, dict) and last.get("status") in ("completed", "failed"):
            snapshots.append(last)
            break
        time.sleep(0.1)
    return [s for s in snapshots if isinstance(s, dict)], control.events(wait_s=0.5)


def record(out_dir: Path = DATA) -> Path:
    """Boot the lab VM, record, write ``qemu-<version>.json``; returns its path."""
    guest = ensure_guest(ROOT / ".cache" / "guest")
    work = Path(tempfile.mkdtemp(prefix="qdrec-", dir="/tmp"))
    sock = work / "rec.sock"
    spec = QemuSpec(name="rec", qmp_servers=(sock,), extra_args=MACHINE_ARGS)
    with QemuVm(spec, guest, work / "vm") as vm:
        vm.wait_ready()
        with QmpControl(sock) as control:
            replies = record_idle(control)
            control.events()  # the STOP/RESUME above: kept from the migration's list
            control.cmd("stop")
            control.cmd("cont")
            run_state_events = control.events(wait_s=0.5)
            snapshots, events = record_migration(control)
            replies["query-status:postmigrate"] = ask(control, "query-status", {})
            schema = control.cmd("query-qmp-schema")
    assert isinstance(schema, list)
    version = replies["query-version"]["return"]["qemu"]
    name = f"qemu-{version['major']}.{version['minor']}.{version['micro']}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "recorded": {"ts": time.time(), "machine": " ".join(MACHINE_ARGS[:2]),
                     "qemu": replies["query-version"]["return"]["package"]},
        "replies": replies, "migration_snapshots": snapshots,
        "events": run_state_events + events,
        "event_members": {e: event_members(schema, e) for e in SYNTHESISED_EVENTS},
    }
    path = out_dir / name
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    print(record())
