"""Dirty rate and the probe command against real QEMU."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import QMPDIRTY, DaemonProcess, base_config, sock, vm_topic
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder

MIB = 1024 * 1024


def test_the_default_dirty_rate_matches_the_guest_within_15_percent(
    broker: Mosquitto, recorder: Recorder, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    rate_mib = 16
    qmp = sock(tmp_path, "dirty")
    vm = lab_vm(QemuSpec(name="dirty", qmp_servers=(qmp,), rate_mib=rate_mib))
    vm.wait_ready()
    # The default method: on a 256 MiB guest the budget buys QEMU's maximum of 16384
    # pages per GiB, 4096 per window; four 1 s windows fit in the 4.5 s interval.
    table = base_config(broker, vm=[{"qmp": f"unix:{qmp}"}],
                        dirty_rate={"enabled": True, "interval_s": 4.5})
    daemon = DaemonProcess(tmp_path, table).start()
    try:
        rates = recorder.wait_for(
            lambda ms: (r := [m.json for m in ms if m.topic == vm_topic("dirty", "dirty_rate")])
            and len(r) >= 3 and r, 60, "three dirty_rate payloads")
    finally:
        daemon.stop()
        daemon.close()
    assert all(r["source"] == "calc-dirty-rate" and r["mode"] == "page-sampling" for r in rates)
    # QEMU reports the window it actually measured (1000 or 1001 ms)
    assert all(abs(r["window_s"] - 1.0) < 0.05 and r["sample_pages"] == 16384 for r in rates)
    assert all((r["windows"], r["sample_pages_total"]) == (4, 4 * 4096) for r in rates)
    # model: about +-7 % (95 %) at 16 MiB/s; the bound says about as much
    assert all(r["error_bound_rel"] is not None and r["error_bound_rel"] < 0.15 for r in rates)
    measured = statistics.median(r["bytes_per_s"] for r in rates) / MIB
    assert abs(measured - rate_mib) <= 0.15 * rate_mib, f"measured {measured} MiB/s"


def test_probe_json_against_real_qemu(lab_vm: Callable[[QemuSpec], QemuVm],
                                      tmp_path: Path) -> None:
    qmp, ctl = sock(tmp_path, "probe"), sock(tmp_path, "probectl")
    vm = lab_vm(QemuSpec(name="probed", qmp_servers=(qmp, ctl), rate_mib=2, vcpus=2))
    vm.wait_qmp()
    out = subprocess.run([QMPDIRTY, "probe", "--qmp", f"unix:{qmp}", "--json"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"info", "tracking", "blockers"}
    info = result["info"]
    assert info["vm"] == "probed" and info["vcpus"] == 2 and info["ram_bytes"] == 256 * MIB
    assert info["accel"] == "tcg" and info["qemu_version"].startswith("10.")
    assert result["blockers"]["migratable"] is True and result["blockers"]["observed"] == []
    assert result["tracking"]["devices"] == []
    with QmpControl(ctl) as control:  # probe is read-only: it did not turn events on
        caps = control.cmd("query-migrate-capabilities")
        assert isinstance(caps, list)
        assert {c["capability"]: c["state"] for c in caps}["events"] is False
    human = subprocess.run([sys.executable, "-m", "qmpdirty", "probe", "--qmp", f"unix:{qmp}"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert human.returncode == 0 and "VM probed  QEMU 10." in human.stdout


def test_probe_unreachable_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run([QMPDIRTY, "probe", "--qmp", f"unix:{tmp_path}/nothing.sock"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 1
    assert "nothing.sock" in out.stderr and "Traceback" not in out.stderr


def test_check_config_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nurl = "http://x"\nkeepalive = 3\n[[vm]]\nqmp = "nope"\n')
    out = subprocess.run([QMPDIRTY, "check-config", str(bad)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2
    for key in ("mqtt.url", "mqtt.keepalive", "vm[0].qmp", "did you mean 'keepalive_s'"):
        assert key in out.stderr
    missing = subprocess.run([QMPDIRTY, "check-config", str(tmp_path / "none.toml")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    good = tmp_path / "good.toml"
    good.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    ok = subprocess.run([QMPDIRTY, "check-config", str(good)], capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0 and "OK" in ok.stdout
    run = subprocess.run([QMPDIRTY, "run", "--config", str(bad)], capture_output=True,
                         text=True, check=False, timeout=30)
    assert run.returncode == 2 and "mqtt.url" in run.stderr
