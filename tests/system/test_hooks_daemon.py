"""The daemon runs hooks on VM and migration events, publishes failures, announces HA."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder


def _hook(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_hooks_fire_failures_are_published_and_ha_discovery_announced(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    record = _hook(tmp_path, "record",
                   f'printf "%s %s " "$QMPDIRTY_EVENT" "$QMPDIRTY_VM" >> {log}; '
                   f'cat >> {log}; echo >> {log}')
    broken = _hook(tmp_path, "broken", "echo oops >&2; exit 3")
    qmp, ctl = sock(tmp_path, "hk"), sock(tmp_path, "hkctl")
    vm = lab_vm(QemuSpec(name="hk", qmp_servers=(qmp, ctl), rate_mib=2))
    vm.wait_qmp()
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        hook=[{"event": "vm-online", "command": [str(record)]},
                              {"event": "vm-offline", "command": [str(record)]},
                              {"event": "migration-status", "command": [str(record)]},
                              {"event": "vm-online", "command": [str(broken)]}],
                        hooks={"max_concurrent": 1},  # one at a time: the log keeps order
                        homeassistant={"enabled": True})
    ha_rec = Recorder(broker.port, "homeassistant/#")
    daemon = DaemonProcess(tmp_path, table, env={"PATH": os.environ["PATH"]}).start()
    try:
        failure = recorder.wait_for(lambda ms: [m.json for m in ms
                                                if m.topic == vm_topic("hk", "hook")], 20)[0]
        assert failure["event"] == "vm-online" and failure["exit_code"] == 3, failure
        assert failure["command"] == [str(broken)] and "oops" in (failure["error"] or "")
        ha = ha_rec.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/config")], 10,
                             "HA discovery")
        assert all(json.loads(m.payload)["device"]["identifiers"] for m in ha)
        states = {json.loads(m.payload)["state_topic"] for m in ha}
        assert states <= {vm_topic("hk", k) for k in ("dirty_rate", "blockers", "migration",
                                                      "forecast", "info")}
        with QmpControl(ctl) as control:
            control.cmd("migrate", uri="exec:cat > /dev/null")
            deadline = time.monotonic() + 30
            while control.cmd("query-migrate").get("status") != "completed":  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        time.sleep(1.0)  # hooks run asynchronously
    finally:
        daemon.stop()
        daemon.close()
        ha_rec.close()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    events = [line.split(" ", 2)[0] for line in lines]
    assert events[0] == "vm-online" and events[-1] == "vm-offline"
    statuses = [json.loads(line.split(" ", 2)[2])["status"] for line in lines
                if line.startswith("migration-status")]
    assert statuses[0] == "setup" and statuses[-1] == "completed"
    online = json.loads(lines[0].split(" ", 2)[2])
    assert online["vm"] == "hk" and online["qemu_version"].startswith("10.")
