"""Hooks on raw QMP events with a real QEMU and the real daemon: ``qmp:NAME`` hooks run
on the event QEMU emits, read it on stdin exactly as QEMU sent it (the same message
another monitor of the same QEMU got), and a ``data`` filter that does not match keeps
its hook from running.

The events are QEMU's own: ``DEVICE_DELETED`` from unplugging a USB keyboard (USB
unplug needs no guest cooperation), and ``GUEST_PANICKED`` from a ``pvpanic`` device
whose I/O port is written as a panicking guest kernel's driver does (hw/misc/pvpanic.c;
written here through the monitor's ``o`` command, as the lab guest has no pvpanic
driver), followed by the ``STOP`` of ``-action panic=pause``.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder

#: A pvpanic ISA device (I/O port 0x505) whose panic pauses the VM, and a USB
#: controller to plug a keyboard into.
DEVICES = ("-device", "pvpanic", "-action", "panic=pause", "-device", "qemu-xhci,id=xhci")
#: What the guest's pvpanic driver writes at a panic: bit 0, PVPANIC_PANICKED.
PANIC = "o /b 0x505 1"


def _hook(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _runs(log: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(QMPDIRTY_EVENT, QMPDIRTY_VM, stdin) of every run the recording hook logged."""
    if not log.exists():
        return []
    runs = []
    for line in log.read_text().split("\n")[:-1]:  # the last is "" or still being written
        event, vm, stdin = line.split(" ", 2)
        runs.append((event, vm, json.loads(stdin)))
    return runs


def _wait_for_runs(log: Path, count: int, daemon: DaemonProcess) -> list[tuple[str, str, Any]]:
    deadline = time.monotonic() + 20
    while len(runs := _runs(log)) < count:
        assert time.monotonic() < deadline, f"{runs}\n{daemon.log()}"
        time.sleep(0.1)
    return runs


def test_qmp_event_hooks_get_the_event_as_qemu_sent_it_and_filters_hold(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    record = _hook(tmp_path, "record",
                   f'printf "%s %s " "$QMPDIRTY_EVENT" "$QMPDIRTY_VM" >> {log}; cat >> {log}')
    never = tmp_path / "never-ran"
    unwanted = _hook(tmp_path, "unwanted", f'echo "$QMPDIRTY_EVENT" >> {never}')
    star_log = tmp_path / "star.log"
    star = _hook(tmp_path, "star", f'echo "$QMPDIRTY_EVENT" >> {star_log}')
    qmp, ctl = sock(tmp_path, "qh"), sock(tmp_path, "qhctl")
    vm = lab_vm(QemuSpec(name="qh", qmp_servers=(qmp, ctl), rate_mib=1, extra_args=DEVICES))
    vm.wait_qmp()
    hooks: list[dict[str, Any]] = [
        {"event": "qmp:DEVICE_DELETED", "command": [str(record)], "data": {"device": "kbd0"}},
        {"event": "qmp:DEVICE_DELETED", "command": [str(unwanted)], "data": {"device": "other"}},
        {"event": "qmp:GUEST_PANICKED", "command": [str(record)]},
        {"event": "qmp:GUEST_PANICKED", "command": [str(unwanted)],
         "data": {"action": "poweroff"}},
        {"event": "qmp:STOP", "command": [str(record)]},
        {"event": "*", "command": [str(star)]},  # the derived events only
    ]
    # one worker: runs go in the order of their events, so a run of `unwanted` queued
    # for an event would have come before the STOP's, the last one awaited
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}], hook=hooks,
                        hooks={"max_concurrent": 1})
    daemon = DaemonProcess(tmp_path, table, env={"PATH": os.environ["PATH"]})
    with QmpControl(ctl) as control:
        daemon.start()
        try:
            recorder.wait_text(vm_topic("qh", "status"), "online", 30)
            control.cmd("device_add", driver="usb-kbd", id="kbd0")
            control.cmd("device_del", id="kbd0")  # DEVICE_DELETED follows the reply
            _wait_for_runs(log, 1, daemon)
            control.cmd("human-monitor-command", **{"command-line": PANIC})
            runs = _wait_for_runs(log, 3, daemon)
            sent = [e for e in control.events(wait_s=1)
                    if e["event"] in ("DEVICE_DELETED", "GUEST_PANICKED", "STOP")]
            time.sleep(0.5)  # what else the worker would run, were it queued
        finally:
            daemon.stop()
            daemon.close()
    assert not never.exists(), never.read_text()
    star_events = star_log.read_text().split()
    assert "vm-online" in star_events and not [e for e in star_events if ":" in e], star_events
    assert _runs(log) == runs  # nothing after the STOP's run either
    assert [(event, vm_name) for event, vm_name, _ in runs] == [
        ("qmp:DEVICE_DELETED", "qh"), ("qmp:GUEST_PANICKED", "qh"), ("qmp:STOP", "qh")]
    deleted, panicked, stopped = (stdin for _, _, stdin in runs)
    assert deleted["data"] == {"device": "kbd0", "path": "/machine/peripheral/kbd0"}
    assert panicked["data"]["action"] == "pause"
    assert "data" not in stopped  # QEMU sends STOP without one
    assert {"seconds", "microseconds"} <= set(deleted["timestamp"])
    # byte for byte what QEMU sent another monitor: timestamps and key order included
    assert [stdin for _, _, stdin in runs] == sent
    assert [list(stdin) for _, _, stdin in runs] == [list(e) for e in sent]
    published = recorder.last(vm_topic("qh", "event/GUEST_PANICKED"))
    assert published is not None and published.json["data"] == panicked["data"]
