"""``qmpdirty admit`` through the real console script against a real mosquitto.

The test publishes the retained state a daemon would (built with the payload models,
so it is valid by construction) and checks every exit path: 0 admitted, 1 denied with
reasons, 2 bad usage, 3 broker unreachable or nothing retained.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from paho.mqtt import publish

from qmpdirty.decisions.role import role_of
from qmpdirty.demo.lab import free_port
from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import QMPDIRTY, write_config
from qmpdirty.telemetry.schema import (
    BlockersPayload,
    ForecastPayload,
    InfoPayload,
    PredictedBlocker,
    Recommendation,
)

pytestmark = pytest.mark.system
HOST = "dst"
SOURCE = "src"
BLOCKER = PredictedBlocker(
    text="0000:3b:00.1: VFIO migration is not supported in kernel", device="/machine/hostdev0",
    cause="the bound driver has no migration support", remedy="bind a variant driver")
Admit = Callable[..., subprocess.CompletedProcess[str]]


def blockers(vm: str, host: str, migratable: bool = True) -> bytes:
    return BlockersPayload(
        ts=time.time(), host=host, vm=vm, seq=3, migratable=migratable,
        predicted=[] if migratable else [BLOCKER],
        observed=[] if migratable else [BLOCKER.text, "a read-write vvfat drive"],
        agree=True, missing=[], unexpected=[],
        unmodelled=[] if migratable else ["a read-write vvfat drive"],
    ).model_dump_json(by_alias=True).encode()


def info(vm: str, host: str, run_state: str = "running") -> bytes:
    role = role_of(run_state, None)
    return InfoPayload(
        ts=time.time(), host=host, vm=vm, seq=1, qemu_version="10.0.2", uuid=None,
        machine="pc-q35-10.0", accel="kvm", ram_bytes=2**30, vcpus=2, run_state=run_state,
        role=role.role, role_reason=role.reason, qmp="unix:/run/q.sock", pid=4242,
        migration_events=True,
    ).model_dump_json(by_alias=True).encode()


def forecast(vm: str, host: str, converges: bool | None = True) -> bytes:
    recommendations = [] if converges is not False else [
        Recommendation(action="dirty-limit", value=40.0, reason="vCPU 2 dirties 80% of pages",
                       applicable=True),
        Recommendation(action="postcopy", value=None, reason="would converge",
                       applicable=False),
    ]
    verdict = "unknown" if converges is None else "converges" if converges else \
        "does-not-converge"
    return ForecastPayload(
        ts=time.time(), host=host, vm=vm, seq=4, verdict=verdict, applicable=True, reason=None,
        blockers=[], converges=converges,
        eta_s=42.0 if converges else None, downtime_ms=120.0 if converges else 2400.0,
        passes=3, bandwidth_bytes_per_s=100 * 2**20, bandwidth_source="configured",
        dirty_bytes_per_s=150 * 2**20 if converges is False else 20 * 2**20,
        dirty_source="calc-dirty-rate", downtime_limit_ms=300.0, remaining_bytes=2**30,
        vfio_bytes=0, recommendations=recommendations, model="geometric-v1",
        notes=["no bandwidth measured yet"] if converges is None else [],
    ).model_dump_json(by_alias=True).encode()


def retain(broker: Mosquitto, messages: dict[str, bytes | str]) -> None:
    publish.multiple([{"topic": t, "payload": p, "qos": 1, "retain": True}
                      for t, p in messages.items()], hostname="127.0.0.1", port=broker.port)


def state(vm: str, host: str = HOST, *, vm_status: str = "online", host_status: str = "online",
          blocked: bool = False, converges: bool | None = True,
          with_forecast: bool = True, run_state: str = "running") -> dict[str, bytes | str]:
    base = f"qmpdirty/{host}"
    out: dict[str, bytes | str] = {f"{base}/status": host_status,
                                   f"{base}/vm/{vm}/status": vm_status,
                                   f"{base}/vm/{vm}/info": info(vm, host, run_state),
                                   f"{base}/vm/{vm}/blockers": blockers(vm, host, not blocked)}
    if with_forecast:
        out[f"{base}/vm/{vm}/forecast"] = forecast(vm, host, converges)
    return out


@pytest.fixture
def admit(broker: Mosquitto, tmp_path: Path) -> Admit:
    config = write_config(tmp_path / "qmpdirty.toml",
                          {"mqtt": {"url": broker.url}, "host": {"name": HOST}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMPDIRTY_")}

    def run(*args: str, config_path: Path = config) -> subprocess.CompletedProcess[str]:
        return subprocess.run([QMPDIRTY, "admit", "--config", str(config_path), *args],
                              capture_output=True, text=True, timeout=60, check=False, env=env)
    return run


def test_migratable_and_converging_is_admitted(broker: Mosquitto, admit: Admit) -> None:
    retain(broker, state("web1"))
    result = admit("web1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("admit: VM web1 on dst is migratable; forecast: converges")
    assert "ETA 42 s" in result.stdout


def test_json_report(broker: Mosquitto, admit: Admit) -> None:
    retain(broker, state("web1"))
    result = admit("web1", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0
    assert report["admit"] is True and report["exit_code"] == 0
    assert report["host"] == HOST and report["vm"] == "web1" and report["reasons"] == []
    assert report["blockers"]["migratable"] is True and report["forecast"]["converges"] is True


def test_blocked_vm_is_denied_with_each_blocker_and_remedy(
    broker: Mosquitto, admit: Admit
) -> None:
    retain(broker, state("gpu1", blocked=True))
    result = admit("gpu1")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"blocker: {BLOCKER.text} (remedy: bind a variant driver)",
        "blocker: a read-write vvfat drive (reported by QEMU)",
    ]


def test_forecast_that_does_not_converge_is_denied_with_recommendations(
    broker: Mosquitto, admit: Admit
) -> None:
    retain(broker, state("busy", converges=False))
    result = admit("busy")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("forecast: will not converge (dirty 150.0 MiB/s, "
                               "bandwidth 100.0 MiB/s, downtime 2400 ms, limit 300 ms")
    assert lines[1:] == ["recommendation: dirty-limit 40: vCPU 2 dirties 80% of pages",
                         "recommendation: postcopy: would converge (not applicable here)"]
    denied = json.loads(admit("busy", "--json").stdout)
    assert denied["admit"] is False and denied["exit_code"] == 1
    assert denied["reasons"] == lines


@pytest.mark.parametrize("missing", [True, False])
def test_unknown_forecast_needs_allow_unknown(
    broker: Mosquitto, admit: Admit, missing: bool
) -> None:
    retain(broker, state("vm2", converges=None, with_forecast=not missing))
    denied = admit("vm2")
    assert denied.returncode == 1
    expected = "forecast: none published for VM vm2 on dst" if missing else \
        "forecast: unknown (dirty 20.0 MiB/s, bandwidth 100.0 MiB/s, downtime 2400 ms, " \
        "limit 300 ms): no bandwidth measured yet"
    assert denied.stdout.splitlines() == [expected]
    allowed = admit("vm2", "--allow-unknown")
    assert allowed.returncode == 0, allowed.stdout


def test_a_waiting_destination_is_denied_by_its_role(broker: Mosquitto, admit: Admit) -> None:
    retain(broker, state("incoming", run_state="inmigrate"))
    result = admit("incoming", "--allow-unknown")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "role: waiting for an incoming migration (incoming-waiting, run state inmigrate)"]
    report = json.loads(admit("incoming", "--json").stdout)
    assert (report["role"], report["role_reason"]) == (
        "incoming-waiting", "waiting for an incoming migration")


def test_stale_state_is_denied(broker: Mosquitto, admit: Admit) -> None:
    retain(broker, state("gone", vm_status="offline"))
    result = admit("gone")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "status: VM gone on dst is offline (host online): its retained state may be stale"]


def test_any_host_finds_the_source_of_an_incoming_migration(
    broker: Mosquitto, admit: Admit
) -> None:
    retain(broker, {**state("mover", SOURCE), **state("mover", "old", vm_status="offline",
                                                        blocked=True)})
    assert admit("mover").returncode == 3  # nothing about it on this host
    result = admit("mover", "--host", "+", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["host"] == SOURCE
    assert admit("mover", "--host", "old").returncode == 1


def test_nothing_retained_exits_3_quickly(broker: Mosquitto, admit: Admit) -> None:
    retain(broker, state("other"))
    started = time.monotonic()
    result = admit("nosuch", "--timeout", "10")
    took = time.monotonic() - started
    assert result.returncode == 3
    assert "nothing retained for VM nosuch on host dst under qmpdirty/" in result.stderr
    assert result.stdout == ""
    assert took < 5, f"waited {took:.1f}s: the subscribe barrier did not end the wait"
    report = json.loads(admit("nosuch", "--json").stdout)
    assert report["exit_code"] == 3 and "nothing retained" in report["error"]


def test_invalid_retained_payload_exits_3(broker: Mosquitto, admit: Admit) -> None:
    retain(broker, {**state("bad"), f"qmpdirty/{HOST}/vm/bad/blockers": b'{"migratable": true}'})
    result = admit("bad")
    assert result.returncode == 3
    assert "the retained blockers on dst are not a valid payload" in result.stderr


def test_unreachable_broker_exits_3(admit: Admit, tmp_path: Path) -> None:
    config = write_config(tmp_path / "down.toml",
                          {"mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}"}})
    result = admit("web1", "--timeout", "2", config_path=config)
    assert result.returncode == 3
    assert "cannot reach the broker" in result.stderr


def test_bad_usage_exits_2(admit: Admit, tmp_path: Path) -> None:
    assert admit().returncode == 2  # no VM
    assert admit("web1", "--timeout", "0").returncode == 2
    missing = admit("web1", config_path=tmp_path / "nope.toml")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
