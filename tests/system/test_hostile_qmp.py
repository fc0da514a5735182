"""Hostile QMP peers next to a real VM (issue 6, item 2), through the real daemon.

Each peer misbehaves in one way. The VM it stands for must go to the published
``error`` state with the reason on ``vm/<vm>/error``, the daemon must log one clear
line for it however often it retries, and the real VM beside them must not notice.
Unknown events, by contrast, are just events: that VM stays ``online``. So does a VM
whose events cannot be read (a 5,000-digit integer, nesting 5,000 deep; issue 12 item
8): those are dropped and counted on the ``daemon`` topic, the events around them
published.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import PREFIX, DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder
from tests.adapters.scripted_qmp import GREETING, Raw, ScriptedQmp

GOOD: dict[str, Any] = {
    "query-version": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""},
    "query-uuid": {"UUID": "00000000-0000-0000-0000-000000000000"},
    "query-status": {"status": "running", "running": True},
    "query-kvm": {"enabled": False, "present": False}, "query-cpus-fast": [{"cpu-index": 0}],
    "query-memory-size-summary": {"base-memory": 268435456},
    "query-migrate-capabilities": [{"capability": "events", "state": True}],
    "query-migrate": {}, "query-migrate-parameters": {"downtime-limit": 300},
}


def _replies(name: str, **over: object) -> dict[str, Callable[[dict[str, Any]], object]]:
    table = {**GOOD, "query-name": {"name": name}, **over}
    return {k: _const(v) for k, v in table.items()}


def _const(value: object) -> Callable[[dict[str, Any]], object]:
    return lambda _args: value


HOSTILE: dict[str, dict[str, Any]] = {
    "malformed": {"replies": _replies("malformed", **{
        "query-version": Raw(b'{"return": {not json\n')})},
    "wrongtypes": {"replies": _replies("wrongtypes", **{"query-version": {"qemu": "ten"}})},
    "missing": {"replies": _replies("missing", **{"query-status": {"running": True}})},
    "errors": {"replies": {}},  # every command: CommandNotFound
    "impossible": {"replies": _replies("impossible", **{"query-version": {
        "qemu": {"major": 2**70, "minor": -1, "micro": 0}, "package": ""}}),
        "greeting": {"QMP": {"version": {"qemu": {"major": 2**70, "minor": -1, "micro": 0},
                                         "package": ""}, "capabilities": []}}},
    "huge": {"replies": _replies("huge", **{"query-version": Raw(
        b'{"return": "' + b"x" * (20 * 2**20) + b'"}\n')})},
}


async def _start(tmp_path: Path) -> dict[str, ScriptedQmp]:
    servers = {}
    for name, spec in HOSTILE.items():
        server = ScriptedQmp(sock(tmp_path, name), replies=spec["replies"],
                             greeting=spec.get("greeting", GREETING))
        servers[name] = await server.start()
    servers["unknownev"] = await ScriptedQmp(sock(tmp_path, "unknownev"),
                                             replies=_replies("unknownev")).start()
    return servers


async def test_hostile_peers_error_state_one_line_each_others_unaffected(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    real = sock(tmp_path, "real")
    lab_vm(QemuSpec(name="real", qmp_servers=(real,), rate_mib=2)).wait_qmp()
    servers = await _start(tmp_path)
    entries = [{"qmp": f"unix:{s.path}", "name": n} for n, s in servers.items()]
    table = base_config(broker, vm=[{"qmp": f"unix:{real}"}, *entries],
                        qmp={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3},
                        daemon={"log_level": "info"})  # production level
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        await recorder.until(lambda ms: all(any(
            m.topic == vm_topic(n, "status") and m.text == "error" for m in ms)
            for n in HOSTILE), 30, "every hostile VM in error")
        await recorder.until(lambda ms: any(m.topic == vm_topic("unknownev", "status")
                                            and m.text == "online" for m in ms), 20)
        await servers["unknownev"].emit("SOMETHING_QEMU_12_INVENTS", {"x": [1, {"y": None}]})
        for bad in (b"9" * 5000, b"[" * 5000 + b"]" * 5000):  # beyond Python's json
            await servers["unknownev"].emit_raw(
                b'{"event": "UNREADABLE", "data": {"v": ' + bad + b'}}\r\n')
        await servers["unknownev"].emit("AFTER_THEM", {})
        event = await recorder.until(lambda ms: [m for m in ms if m.topic == vm_topic(
            "unknownev", "event/SOMETHING_QEMU_12_INVENTS")], 10, "the unknown event")
        assert event[0].json["data"] == {"x": [1, {"y": None}]}
        await recorder.until(lambda ms: any(m.topic == vm_topic("unknownev", "event/AFTER_THEM")
                                            for m in ms), 10, "the event after them")
        counted = await recorder.until(lambda ms: [m.json for m in ms if m.topic ==
                                                   f"{PREFIX}/daemon" and m.json["qmp_events"][
                                                       "unreadable_total"]], 10, "the count")
        assert counted[-1]["qmp_events"]["unreadable_by_vm"] == {"unknownev": 2}
        await asyncio.sleep(2.0)  # several more reconnect attempts per hostile peer
        # before SIGTERM, which rightly publishes offline for every VM, in error or not
        before_stop = {n: [m.text for m in recorder.on(vm_topic(n, "status"))] for n in HOSTILE}
    finally:
        daemon.stop()
        daemon.close()
        for s in servers.values():
            await s.close()
    reasons = {n: recorder.last(vm_topic(n, "error")) for n in HOSTILE}
    for name, msg in reasons.items():
        assert msg is not None and msg.json["reason"], name
        statuses = before_stop[name]
        assert statuses and set(statuses) == {"error"}, (name, statuses)
        assert len(statuses) <= 2, f"{name}: the same error re-published {len(statuses)} times"
    assert "10 MiB" in reasons["huge"].json["reason"]  # type: ignore[union-attr]
    assert [m.text for m in recorder.on(vm_topic("real", "status"))] == ["online", "offline"]
    assert "error" not in [m.text for m in recorder.on(vm_topic("unknownev", "status"))]
    assert not recorder.on(vm_topic("unknownev", "event/UNREADABLE"))
    log = daemon.log()
    assert len([ln for ln in log.splitlines() if "unreadable QMP events" in ln]) == 1
    for name, server in servers.items():
        if name == "unknownev":
            continue
        lines = [ln for ln in log.splitlines() if str(server.path) in ln and
                 re.search(r" (WARNING|ERROR) ", ln)]
        assert len(lines) == 1, f"{name}: {len(lines)} warning lines:\n" + "\n".join(lines)
    assert "Traceback" not in log
    json.dumps(table)
