"""A hostile VM name end to end (issue 6, item 4): no injection, no path escape, no
broken topic. QEMU's own -name carries it; a hook receives it."""

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
