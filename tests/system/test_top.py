"""``qmpdirty top`` through the real console script against a real mosquitto.

The test publishes the retained state daemons would (tests/support/fleet_payloads.py,
built with the payload models) and reads it back with ``--once`` (plain text, exit 0;
3 when nothing is retained or the broker is unreachable) and live, under tmux: the
rows appear, and change after a new retained publish.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from paho.mqtt import publish

from qmpdirty.demo.lab import free_port
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import QMPDIRTY, write_config
from tests.support import fleet_payloads as p

pytestmark = pytest.mark.system
Top = Callable[..., subprocess.CompletedProcess[str]]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("QMPDIRTY_")}


def retain(broker: Mosquitto, messages: dict[str, bytes]) -> None:
    publish.multiple([{"topic": t, "payload": v, "qos": 1, "retain": True}
                      for t, v in messages.items()], hostname="127.0.0.1", port=broker.port)


@pytest.fixture
def config(broker: Mosquitto, tmp_path: Path) -> Path:
    return write_config(tmp_path / "qmpdirty.toml", {"mqtt": {"url": broker.url}})


@pytest.fixture
def top(config: Path) -> Top:
    def run(*args: str, config_path: Path = config) -> subprocess.CompletedProcess[str]:
        return subprocess.run([QMPDIRTY, "top", "--config", str(config_path), *args],
                              capture_output=True, text=True, timeout=60, check=False, env=ENV)
    return run


def fleet(broker: Mosquitto) -> None:
    retain(broker, {
        **p.vm_state("kvm-a", "web1", modes=("device", "device", "iommu"), mib_per_s=12.5,
                     migrating=True),
        **p.vm_state("kvm-a", "gpu1", migratable=False, modes=("blocked",), mib_per_s=3),
        **p.vm_state("kvm-b", "db1", status="unresponsive", mib_per_s=80),
        "qmpdirty/kvm-a/status": b"online", "qmpdirty/kvm-b/status": b"online",
    })


def lines_of(text: str) -> dict[str, str]:
    """VM name -> its line (the second column)."""
    return {line.split()[1]: line for line in text.splitlines()[2:] if line.strip()}


def test_once_prints_every_vm_as_plain_text(broker: Mosquitto, top: Top) -> None:
    fleet(broker)
    result = top("--once")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    head, columns = result.stdout.splitlines()[:2]
    assert head.startswith("qmpdirty top: 3 VMs on 2 hosts, sorted by name")
    assert columns.split() == ["HOST", "VM", "STATUS", "ROLE", "MIGRATABLE", "VFIO", "DIRTY",
                               "FORECAST", "MIGRATION"]
    rows = lines_of(result.stdout)
    assert list(rows) == ["gpu1", "web1", "db1"]
    assert "device x2, iommu" in rows["web1"] and "12.5 MiB/s ±8%" in rows["web1"]
    assert "[###############-----]  75% ETA 7s" in rows["web1"]
    assert "converges 42s" in rows["web1"] and " yes " in rows["web1"]
    assert f"no: {p.BLOCKER[:20]}" in rows["gpu1"] and "blocked" in rows["gpu1"]
    assert "unresponsive" in rows["db1"] and "running" in rows["db1"]


def test_once_host_and_sort(broker: Mosquitto, top: Top) -> None:
    fleet(broker)
    assert list(lines_of(top("--once", "--host", "kvm-a").stdout)) == ["gpu1", "web1"]
    assert list(lines_of(top("--once", "--sort", "dirty").stdout)) == ["db1", "web1", "gpu1"]
    assert next(iter(lines_of(top("--once", "--sort", "status").stdout))) == "db1"


def test_once_with_nothing_retained_is_exit_3(broker: Mosquitto, top: Top) -> None:
    result = top("--once")
    assert result.returncode == 3
    assert "nothing retained under qmpdirty/+/#" in result.stderr


def test_once_with_no_broker_is_exit_3(tmp_path: Path, top: Top) -> None:
    config = write_config(tmp_path / "none.toml",
                          {"mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}"}})
    result = top("--once", "--timeout", "2", config_path=config)
    assert result.returncode == 3
    assert result.stderr.startswith("top: cannot reach the broker")
    assert result.stderr.count("\n") == 1, result.stderr  # nothing from the MQTT library


def test_bad_usage_is_exit_2(tmp_path: Path, top: Top) -> None:
    assert top("--once", config_path=tmp_path / "missing.toml").returncode == 2
    assert top("--once", "--sort", "size").returncode == 2


# --- live, under tmux -----------------------------------------------------------------------


@pytest.fixture
def tmux() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: run scripts/bootstrap (it installs tmux)")
    session = f"qmpdirty-top-{uuid.uuid4().hex[:8]}"
    yield session
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)


def screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True, timeout=10).stdout


def wait_for(session: str, *texts: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    shown = ""
    while time.monotonic() < deadline:
        shown = screen(session)
        if all(t in shown for t in texts):
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{texts} not on the screen:\n{shown}")


def start_top(tmux: str, config: Path) -> None:
    command = f"{QMPDIRTY} top --config {config} --interval 0.2"
    subprocess.run(["tmux", "new-session", "-d", "-s", tmux, "-x", "220", "-y", "30",
                    "env", "-u", "QMPDIRTY_MQTT__URL", "TERM=xterm-256color", *command.split()],
                   check=True, timeout=10, env=ENV)


def test_live_view_shows_rows_and_follows_new_publishes(
    broker: Mosquitto, config: Path, tmux: str
) -> None:
    fleet(broker)
    start_top(tmux, config)
    shown = wait_for(tmux, "3 VMs on 2 hosts", "web1", "gpu1", "db1", "75% ETA 7s")
    assert "device x2, iommu" in shown
    retain(broker, {**p.vm_state("kvm-c", "new1", mib_per_s=1),
                    "qmpdirty/kvm-a/vm/web1/migration": p.migration("kvm-a", "web1",
                                                                    remaining=2**30, eta_s=20)})
    shown = wait_for(tmux, "4 VMs on 3 hosts", "new1", "50% ETA 20s")
    retain(broker, {"qmpdirty/kvm-b/status": b"offline"})
    wait_for(tmux, "hosts offline: kvm-b", "host-offline")
    subprocess.run(["tmux", "send-keys", "-t", tmux, "C-c"], check=True, timeout=10)
    deadline = time.monotonic() + 10
    while subprocess.run(["tmux", "has-session", "-t", tmux], capture_output=True,
                         check=False).returncode == 0:
        assert time.monotonic() < deadline, "top did not exit on Ctrl-C"
        time.sleep(0.2)


def test_live_view_survives_the_broker_going_away(
    broker: Mosquitto, config: Path, tmux: str
) -> None:
    fleet(broker)
    start_top(tmux, config)
    wait_for(tmux, "3 VMs on 2 hosts", "web1")
    broker.stop()
    shown = wait_for(tmux, "MQTT mqtt://127.0.0.1")
    assert "web1" in shown  # the last state stays on the screen
    broker.restart()
    retain(broker, p.vm_state("kvm-c", "new1"))
    shown = wait_for(tmux, "new1", "1 VMs on 1 hosts", timeout_s=20)
    assert "web1" not in shown  # the restarted broker lost it (no persistence)
