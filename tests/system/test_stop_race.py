"""The stop race (issue 12, item 1), with real QEMU and mosquitto.

The libvirt hook sends SIGHUP on ``stopped``, so a VM's QEMU quits (its session hangs
up) and the daemon reconciles its fleet (cancelling that VM's supervisor, whose socket
is gone) at the same moment. Under Python 3.11 the per-VM TaskGroup then raised the
hang-up instead of the cancellation, the firewall swallowed it, and the supervisor went
on reconnecting outside the fleet: the VM came back with two QMP sessions and a ``.2``
name, and SIGTERM never returned. Cancellation must always win; SIGTERM must exit
within ``shutdown_deadline_s`` with ``offline`` delivered.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import PREFIX, DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder

pytestmark = pytest.mark.system

ROUNDS = 3
DEADLINE_S = 5.0


def test_quit_and_sighup_together_leave_one_session_and_a_prompt_stop(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    path = sock(tmp_path, "racer")
    table = base_config(broker, discovery={"globs": [str(path.parent / "*.sock")],
                                           "rescan_interval_s": 0.5},
                        daemon={"log_level": "debug", "shutdown_deadline_s": DEADLINE_S})
    daemon = DaemonProcess(tmp_path, table).start()
    stopped = False
    try:
        recorder.wait_text(f"{PREFIX}/status", "online", 15)
        for _ in range(ROUNDS):
            began = time.time()
            vm = lab_vm(QemuSpec(name="racer", qmp_servers=(path,), rate_mib=2))
            recorder.wait_text(vm_topic("racer", "status"), "online", 30, after=began)
            vm.kill(signal.SIGTERM)  # QEMU quits and removes its socket...
            daemon.signal(signal.SIGHUP)  # ...while the hook makes the daemon reconcile
            vm.stop()
            recorder.wait_text(vm_topic("racer", "status"), "offline", 10, after=began)
        began = time.time()
        lab_vm(QemuSpec(name="racer", qmp_servers=(path,), rate_mib=2))
        recorder.wait_text(vm_topic("racer", "status"), "online", 30, after=began)
        time.sleep(1.5)  # a supervisor left over from a round would connect a second time

        names = {m.topic.split("/")[3] for m in recorder.snapshot()
                 if m.topic.startswith(f"{PREFIX}/vm/")}
        assert names == {"racer"}, names  # no "racer.2": one session per QEMU
        assert "two QMP sessions call themselves" not in daemon.log()

        code, took = daemon.stop(timeout_s=DEADLINE_S + 5)
        stopped = True
        assert code == 0
        assert took <= DEADLINE_S, f"SIGTERM took {took:.1f} s"
        recorder.wait_text(vm_topic("racer", "status"), "offline", 5, after=time.time() - took)
        recorder.wait_text(f"{PREFIX}/status", "offline", 5)
    finally:
        if not stopped:
            daemon.close()
    assert "Traceback" not in daemon.log()
