"""A real Prometheus (Debian's ``prometheus``) scrapes a real daemon watching a real QEMU;
PromQL over its HTTP API returns what the MQTT topics say, and ``offline`` after a kill."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.demo.lab import end_child, free_port, track_child
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.control import QmpControl
from qmpdirty.demo.lab.daemon_process import HOST, DaemonProcess, base_config, sock
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm

pytestmark = pytest.mark.system
MIB = 2**20


class Prometheus:
    """One private Prometheus on a free loopback port scraping ``target`` every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is missing: run scripts/bootstrap (Debian's prometheus)")
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "qmpdirty", "static_configs": [
                {"targets": [target]}]}],
        }))
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=log, start_new_session=True)
        track_child(self.proc)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = json.load(r)
        except OSError:
            return []
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_any(self, promql: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The series of ``promql`` once there is any (fails after the timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if got := self.query(promql):
                return got
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise AssertionError(f"{promql}: nothing after {timeout_s}s\n{tail}")

    def wait_value(self, promql: str, value: float, timeout_s: float = 30.0
                   ) -> dict[str, Any]:
        """The first series of ``promql`` once it has ``value`` (fails after the timeout)."""
        deadline, got = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            got = self.query(promql)
            if got and float(got[0]["value"][1]) == value:
                return got[0]
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise AssertionError(f"{promql}: {got} after {timeout_s}s, wanted {value}\n{tail}")

    def close(self) -> None:
        end_child(self.proc)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        started.append(Prometheus(tmp_path, target))
        return started[-1]

    yield start
    for p in started:
        p.close()


def test_prometheus_scrapes_what_the_topics_say(
    broker: Mosquitto, lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path,
    prometheus_for: Callable[[str], Prometheus],
) -> None:
    qmp, ctl = sock(tmp_path, "vm1"), sock(tmp_path, "vm1ctl")
    vm = lab_vm(QemuSpec(name="vm1", qmp_servers=(qmp, ctl), rate_mib=4))
    vm.wait_qmp()
    listen = f"127.0.0.1:{free_port()}"
    daemon = DaemonProcess(tmp_path, base_config(
        broker, vm=[{"qmp": f"unix:{qmp}"}], prometheus={"listen": listen},
        dirty_rate={"enabled": True, "interval_s": 2.0, "window_s": 1.0, "sample_pages": 16384},
        migration={"poll_interval_s": 0.5})).start()
    prom = prometheus_for(listen)
    try:
        sel = f'host="{HOST}",vm="vm1"'
        up = prom.wait_value(f"qmpdirty_vm_up{{{sel}}}", 1)
        assert up["metric"]["job"] == "qmpdirty"
        prom.wait_value(f'qmpdirty_vm_role_info{{{sel},role="running"}}', 1)
        prom.wait_value(f"qmpdirty_vm_migratable{{{sel}}}", 1)  # no VFIO, no blocker
        prom.wait_value(f'qmpdirty_sessions{{host="{HOST}"}}', 1)
        info = prom.wait_value(f"qmpdirty_vm_info{{{sel}}}", 1)
        assert info["metric"]["qemu_version"].startswith("10.")
        [rate] = prom.wait_any(
            f'qmpdirty_vm_dirty_rate_bytes_per_second{{{sel},source="calc-dirty-rate"}} > 0')
        # the guest dirties 4 MiB/s, and more while it boots: accuracy is tested elsewhere
        assert rate["metric"]["mode"] == "page-sampling" and float(rate["value"][1]) > MIB, rate
        [verdict] = prom.wait_any(f"qmpdirty_vm_forecast_info{{{sel}}} == 1")
        assert verdict["metric"]["verdict"] in ("converges", "does-not-converge"), verdict

        with QmpControl(ctl) as control:
            control.cmd("migrate", uri="exec:cat > /dev/null")
        prom.wait_value(f'qmpdirty_migration_info{{{sel},status="completed",role="source"}}',
                        1)
        prom.wait_any(f"qmpdirty_migration_transferred_bytes{{{sel}}} > 0")

        lint_metrics(listen)
        vm.kill(signal.SIGKILL)
        prom.wait_value(f"qmpdirty_vm_up{{{sel}}}", 0, timeout_s=15)
        prom.wait_value(f'qmpdirty_vm_status{{{sel},status="offline"}}', 1)
    finally:
        code, _ = daemon.stop()
        daemon.close()
    assert code == 0, daemon.log()


def lint_metrics(listen: str) -> None:
    """Prometheus' own linter (``promtool check metrics``: names, units, ``_total``, help)
    finds nothing in the daemon's ``/metrics``."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as r:
        body = r.read()
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with Debian's prometheus"
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                          timeout=30, check=False)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, b""), lint


def test_a_port_in_use_stops_the_daemon_with_the_key(broker: Mosquitto, tmp_path: Path
                                                      ) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        daemon = DaemonProcess(tmp_path, base_config(
            broker, prometheus={"listen": f"127.0.0.1:{port}"})).start()
        assert daemon.proc is not None
        try:
            code = daemon.proc.wait(15)
        finally:
            daemon.close()
    assert code == 1
    assert "prometheus.listen: cannot listen on 127.0.0.1" in daemon.log()
