"""The daemon runs hooks on VM and migration events, publishes failures, announces HA;
a hook that detaches a child is judged by its own exit; at SIGTERM every VM's
vm-offline hook runs within the deadline, however long the backlog of other hooks."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import (
    HOST,
    PREFIX,
    DaemonProcess,
    base_config,
    sock,
    vm_topic,
)
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder
from qmpdirty.telemetry.discovery import ENTITIES, HOST_ENTITIES


def _hook(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _check_discovery(ha_rec: Recorder) -> None:
    """The VM's entities and the host's: topics qmpdirty publishes; the VM's device hangs
    from the host's and shows QEMU's version and machine."""
    every = len(ENTITIES) + len(HOST_ENTITIES)  # the VM's and the host's
    ha = ha_rec.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/config")]
                         if len(ms) >= every else [], 10, "HA discovery")
    configs = [json.loads(m.payload) for m in ha]
    assert all(c["device"]["identifiers"] for c in configs)
    states = {c["state_topic"] for c in configs}
    assert states <= {vm_topic("hk", k) for k in (
        "dirty_rate", "blockers", "migration", "forecast", "info", "status", "tracking",
    )} | {f"{PREFIX}/status", f"{PREFIX}/daemon"}
    vms = [c["device"] for c in configs if c["state_topic"].startswith(vm_topic("hk", ""))]
    assert vms and all(d["via_device"] == f"qmpdirty_{HOST}" and
                       d["sw_version"].startswith("QEMU 10.") and d["hw_version"]
                       for d in vms), vms


def test_hooks_fire_failures_are_published_and_ha_discovery_announced(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    record = _hook(tmp_path, "record",
                   f'printf "%s %s " "$QMPDIRTY_EVENT" "$QMPDIRTY_VM" >> {log}; '
                   f'cat >> {log}; echo >> {log}')
    broken = _hook(tmp_path, "broken", "echo oops >&2; exit 3")
    detached = tmp_path / "detached.pid"  # docs/hooks.md's recipe, under the daemon's uvloop
    detach = _hook(tmp_path, "detach", f"setsid sleep 60 >/dev/null 2>&1 & echo $! > {detached}")
    qmp, ctl = sock(tmp_path, "hk"), sock(tmp_path, "hkctl")
    vm = lab_vm(QemuSpec(name="hk", qmp_servers=(qmp, ctl), rate_mib=2))
    vm.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        hook=[{"event": "vm-online", "command": [str(record)]},
                              {"event": "vm-offline", "command": [str(record)]},
                              {"event": "migration-status", "command": [str(record)]},
                              {"event": "vm-online", "command": [str(broken)]},
                              {"event": "vm-online", "command": [str(detach)], "timeout_s": 2}],
                        hooks={"max_concurrent": 1},  # one at a time: the log keeps order
                        homeassistant={"enabled": True})
    ha_rec = Recorder(broker.port, "homeassistant/#")
    daemon = DaemonProcess(tmp_path, table, env={"PATH": os.environ["PATH"]}).start()
    try:
        failure = recorder.wait_for(lambda ms: [m.json for m in ms
                                                if m.topic == vm_topic("hk", "hook")], 20)[0]
        assert failure["event"] == "vm-online" and failure["exit_code"] == 3, failure
        assert failure["command"] == [str(broken)] and "oops" in (failure["error"] or "")
        _check_discovery(ha_rec)
        with QmpControl(ctl) as control:
            control.cmd("migrate", uri="exec:cat > /dev/null")
            deadline = time.monotonic() + 30
            while control.cmd("query-migrate").get("status") != "completed":  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        time.sleep(1.0)  # hooks run asynchronously
        failures = [m.json for m in recorder.on(vm_topic("hk", "hook"))]
    finally:
        daemon.stop()
        daemon.close()
        ha_rec.close()
        if detached.exists():
            child = int(detached.read_text())
            alive = Path(f"/proc/{child}").exists()
            os.kill(child, signal.SIGKILL)
            assert alive, "the detached child should outlive the hook"
    assert [f["command"] for f in failures] == [[str(broken)]], failures  # not the recipe
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    events = [line.split(" ", 2)[0] for line in lines]
    assert events[0] == "vm-online" and events[-1] == "vm-offline"
    statuses = [json.loads(line.split(" ", 2)[2])["status"] for line in lines
                if line.startswith("migration-status")]
    assert statuses[0] == "setup" and statuses[-1] == "completed"
    online = json.loads(lines[0].split(" ", 2)[2])
    assert online["vm"] == "hk" and online["qemu_version"].startswith("10.")
    offline = json.loads(lines[-1].split(" ", 2)[2])  # B10: not {} any more
    assert offline["event"] == "vm-offline" and offline["reason"] == "daemon-stopping"
    assert (offline["host"], offline["vm"]) == ("testhost", "hk") and offline["ts"] > 0
    assert offline["info"] == online


def test_sigterm_runs_every_vm_offline_hook_within_the_deadline_despite_a_backlog(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """A pool of one worker busy with slow hooks and a backlog of more: at SIGTERM the
    vm-offline hook still runs for every VM, and the daemon exits within
    ``shutdown_deadline_s`` (it ran for 0 of 1 VMs: queued behind the backlog)."""
    out = tmp_path / "offline"
    out.mkdir()
    record = _hook(tmp_path, "record", f'cat > "{out}/$QMPDIRTY_VM.json"')
    slow = _hook(tmp_path, "slow", "sleep 4")
    names = ("off1", "off2")
    qmps = [sock(tmp_path, name) for name in names]
    for name, qmp in zip(names, qmps, strict=True):
        lab_vm(QemuSpec(name=name, qmp_servers=(qmp,), rate_mib=1)).wait_qmp()
    deadline_s = 4.0
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"} for qmp in qmps],
                        hook=[*({"event": e, "command": [str(slow)]}
                                for e in ("vm-online", "tracking-changed", "blockers-changed")),
                              {"event": "vm-offline", "command": [str(record)]}],
                        hooks={"max_concurrent": 1, "timeout_s": 30},
                        daemon={"shutdown_deadline_s": deadline_s})
    daemon = DaemonProcess(tmp_path, table, env={"PATH": os.environ["PATH"]}).start()
    try:
        recorder.wait_for(lambda ms: all(
            any(m.topic == vm_topic(n, "status") and m.payload == b"online" for m in ms)
            for n in names), 30, "both VMs online")
        time.sleep(0.5)  # the slow hooks of both VMs' start: one runs, the rest wait
        code, took = daemon.stop()
    finally:
        daemon.close()
    assert code == 0 and took < deadline_s + 1.0, (code, took, daemon.log())
    docs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert sorted(docs) == list(names), daemon.log()
    for name in names:
        assert docs[name]["reason"] == "daemon-stopping"
        assert docs[name]["info"]["vm"] == name
    assert "still queued" in daemon.log()  # the backlog: counted and logged, not run
