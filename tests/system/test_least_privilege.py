"""The allow-list, proven at the wire (issue 6, item 4): a recording proxy between the
real daemon and a real QEMU sees only commands the policy allows, whatever the
daemon does (events, migrations, dirty rate, VFIO evaluation, hot-plug polling)."""

from __future__ import annotations

import asyncio
import grp
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.listener import QmpListener
from tests.support.recording_proxy import RecordingProxy


async def _watch(broker: Mosquitto, recorder: Recorder, tmp_path: Path,
                 lab_vm: Callable[[QemuSpec], QemuVm], name: str,
                 **sections: Any) -> list[tuple[str, dict[str, Any]]]:
    qmp, ctl, front = sock(tmp_path, name), sock(tmp_path, f"{name}ctl"), sock(tmp_path, "px")
    lab_vm(QemuSpec(name=name, qmp_servers=(qmp, ctl), rate_mib=4)).wait_qmp()
    proxy = await RecordingProxy(front, qmp).start()
    table = base_config(broker, vm=[{"qmp": f"unix:{front}"}], **sections)
    work = tmp_path / f"{name}-daemon"
    work.mkdir()
    daemon = DaemonProcess(work, table).start()
    try:
        await recorder.until(lambda ms: any(m.topic == vm_topic(name, "status") and
                                            m.text == "online" for m in ms), 20)
        with QmpControl(ctl) as control:  # a migration and a hot-plug, from outside
            control.cmd("migrate", uri="exec:cat > /dev/null")
            await recorder.until(lambda ms: any(m.topic == vm_topic(name, "migration/summary")
                                                for m in ms), 30, "summary")
            control.cmd("device_add", driver="virtio-net-pci", id="hot0")
        await asyncio.sleep(3.0)  # dirty rate, refreshes, hot-plug polling
    finally:
        daemon.stop()
        daemon.close()
        await proxy.close()
    return proxy.commands


async def test_default_policy_sends_only_allowed_commands(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    sent = await _watch(broker, recorder, tmp_path, lab_vm, "pdef",
                        dirty_rate={"enabled": True, "interval_s": 1.0, "window_s": 0.5},
                        vfio={"hotplug_poll_s": 1.0})
    policy = CommandPolicy()  # the defaults: events on, dirty rate on, nothing applied
    refused = [(c, a) for c, a in sent if c != "qmp_capabilities" and not policy.allows(c, a)]
    assert refused == []
    names = {c for c, _ in sent}
    # it did exercise them (a VM without VFIO devices does not read the flat view)
    assert {"migrate-set-capabilities", "calc-dirty-rate", "query-migrate", "qom-list",
            "query-status"} <= names
    assert not names & {"migrate", "stop", "cont", "migrate-set-parameters", "device_del",
                        "quit", "system_reset"}


async def test_read_only_policy_never_changes_anything(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    sent = await _watch(broker, recorder, tmp_path, lab_vm, "pro",
                        qmp={"enable_migration_events": False},
                        dirty_rate={"enabled": False})
    names = {c for c, _ in sent}
    assert not names & {"migrate-set-capabilities", "calc-dirty-rate"}
    read_only = CommandPolicy(enable_migration_events=False, measure_dirty_rate=False)
    assert [c for c, a in sent if c != "qmp_capabilities" and not read_only.allows(c, a)] == []


def test_server_socket_gets_the_configured_mode_and_group(tmp_path: Path) -> None:
    group = next(g for g in ("nogroup", "daemon", "users") if _exists(g))
    listener = QmpListener(sock(tmp_path, "srv"), 0o640, group)
    listener.open()
    try:
        st = listener.path.stat()
        assert st.st_mode & 0o777 == 0o640 and st.st_gid == grp.getgrnam(group).gr_gid
    finally:
        listener.close()
    assert not listener.path.exists()


def _exists(group: str) -> bool:
    try:
        grp.getgrnam(group)
    except KeyError:
        return False
    return True
