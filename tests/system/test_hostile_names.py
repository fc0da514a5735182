"""A hostile VM name end to end (issue 6, item 4): no injection, no path escape, no
broken topic. QEMU's own -name carries it; a hook receives it. Names that sanitise
alike stay with their VMs across reconnects (issue 12, item 8)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import PREFIX, DaemonProcess, base_config, sock
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder
from qmpdirty.telemetry.topics import sanitise
from tests.adapters.scripted_qmp import ScriptedQmp
from tests.system.test_hostile_qmp import GOOD


def test_hostile_name_is_sanitised_and_injects_nothing(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    name = (f"a$(touch {canary})`touch {canary}`;touch {canary};../../etc/+/#/\nnext line"
            + "x" * 1000)
    qmp = sock(tmp_path, "hostile")
    # QEMU's -name splits on commas only; everything else reaches query-name verbatim
    lab_vm(QemuSpec(name="hostile", qmp_servers=(qmp,), rate_mib=2,
                    extra_args=("-name", name))).wait_qmp()
    seen = tmp_path / "hook-env"
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\nprintf "%s" "$QMPDIRTY_VM" > {seen}\ncat > /dev/null\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        hook=[{"event": "vm-online", "command": [str(hook)]}])
    daemon = DaemonProcess(tmp_path, table, env={"PATH": os.environ["PATH"]}).start()
    safe = sanitise(name)
    try:
        recorder.wait_for(lambda ms: any(m.topic == f"{PREFIX}/vm/{safe}/status" and
                                         m.text == "online" for m in ms), 20, "online")
        deadline = time.monotonic() + 10
        while not seen.exists():
            assert time.monotonic() < deadline, daemon.log()[-2000:]
            time.sleep(0.05)
    finally:
        daemon.stop()
        daemon.close()
    assert len(safe) <= 128 and set(safe) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    vm_levels = {m.topic.split("/")[3] for m in recorder.snapshot() if "/vm/" in m.topic}
    assert vm_levels == {safe}  # one level, no wildcard, no separator
    assert not canary.exists()  # nothing ran
    assert seen.read_text() == safe  # hooks get the topic-safe name
    info = next(m.json for m in recorder.snapshot() if m.topic.endswith("/info"))
    assert info["vm"] == safe


#: Two pairs of VMs whose names sanitise alike: one pair with UUIDs, one without (then
#: the QMP address tells them apart).
ALIKE = {"a": ("web 1", "0a0a0a0a-0000-4000-8000-00000000000a"),
         "b": ("web/1", "0b0b0b0b-0000-4000-8000-00000000000b"),
         "c": ("db 1", None), "d": ("db/1", None)}


def _peer(tmp_path: Path, key: str) -> ScriptedQmp:
    name, uuid = ALIKE[key]
    replies = {**GOOD, "query-name": {"name": name},
               "query-uuid": {"UUID": uuid or "00000000-0000-0000-0000-000000000000"}}
    return ScriptedQmp(sock(tmp_path, key), replies={k: _const(v) for k, v in replies.items()})


def _const(value: object) -> Callable[[dict[str, object]], object]:
    return lambda _args: value


async def test_names_that_sanitise_alike_stay_with_their_vm_across_reconnects(
        broker: Mosquitto, recorder: Recorder, tmp_path: Path) -> None:
    """Issue 12 item 8: ``web 1`` and ``web/1`` are both ``web_1``; the first to claim
    it keeps it and the other keeps ``web_1.2``, whichever reconnects first."""
    peers = {k: _peer(tmp_path, k) for k in ALIKE}
    table = base_config(broker, vm=[{"qmp": f"unix:{p.path}"} for p in peers.values()],
                        qmp={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2})
    daemon = DaemonProcess(tmp_path, table).start()
    owners: list[dict[str, str]] = []
    try:
        for order in ("abcd", "badc", "dcba", "acbd"):
            since = time.time()
            for k in order:  # one at a time: the order of the claims is the order given
                await peers[k].start()
                await _online_as(recorder, peers[k], since)
            owners.append(_who_is_who(recorder, since))
            closed = time.time()
            for peer in peers.values():
                await peer.close()
            await _offline_since(recorder, closed, len(peers))
    finally:
        daemon.stop()
        daemon.close()
        for peer in peers.values():
            await peer.close()
    first = {"web_1": "a", "web_1.2": "b", "db_1": "c", "db_1.2": "d"}
    assert owners == [first] * 4, owners
    assert "Traceback" not in daemon.log()


async def _online_as(recorder: Recorder, peer: ScriptedQmp, since: float) -> None:
    await recorder.until(lambda ms: any(
        m.topic.endswith("/info") and m.at >= since and m.json["qmp"] == f"unix:{peer.path}"
        for m in ms), 10, f"{peer.path.name} online")


async def _offline_since(recorder: Recorder, since: float, count: int) -> None:
    await recorder.until(lambda ms: sum(m.text == "offline" for m in ms if m.at >= since)
                         >= count, 10, f"{count} VMs offline")


def _who_is_who(recorder: Recorder, since: float) -> dict[str, str]:
    """Topic name -> the peer (its socket's name) whose ``info`` it published."""
    return {m.topic.split("/")[3]: Path(m.json["qmp"].removeprefix("unix:")).stem
            for m in recorder.snapshot() if m.topic.endswith("/info") and m.at >= since}
