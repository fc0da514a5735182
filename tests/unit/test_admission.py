"""May a VM migrate now? ``decisions.admission.judge`` over payload models, and the
``admit`` command's report (text and JSON) with a stub in place of the broker."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from qmpdirty.cli.admit import AdmitReport, admit_command, group_by_host, pick
from qmpdirty.decisions.admission import Presence, forecast_line, judge
from qmpdirty.decisions.role import VmRole, role_of
from qmpdirty.errors import SinkError
from qmpdirty.telemetry.schema import (
    BlockersPayload,
    ForecastPayload,
    InfoPayload,
    PredictedBlocker,
    Recommendation,
)
from qmpdirty.telemetry.topics import Topics

ONLINE = Presence("h1", "vm1", "online", "online")
BLOCKER = PredictedBlocker(text="0000:3b:00.1: VFIO migration is not supported in kernel",
                           device="/machine/peripheral/h0", cause="no driver",
                           remedy="bind a variant driver")


def blockers(migratable: bool = True, ts: float = 100.0, host: str = "h1") -> BlockersPayload:
    return BlockersPayload(
        ts=ts, host=host, vm="vm1", seq=1, migratable=migratable,
        predicted=[] if migratable else [BLOCKER],
        observed=[] if migratable else [BLOCKER.text, "a read-write vvfat drive"],
        agree=True, missing=[], unexpected=[], unmodelled=[])


def info(run_state: str = "running", ts: float = 100.0, host: str = "h1",
         migrating: bool = False) -> InfoPayload:
    role = role_of(run_state, "source" if migrating else None)
    return InfoPayload(
        ts=ts, host=host, vm="vm1", seq=1, qemu_version="10.0.2", uuid=None, machine="q35",
        accel="kvm", ram_bytes=2**30, vcpus=2, run_state=run_state, role=role.role,
        role_reason=role.reason, qmp="unix:/run/q.sock", pid=1234, migration_events=True)


VERDICT = {True: "converges", False: "does-not-converge", None: "unknown"}


def forecast(converges: bool | None = True, ts: float = 100.0, host: str = "h1"
             ) -> ForecastPayload:
    return ForecastPayload(
        ts=ts, host=host, vm="vm1", seq=2, verdict=VERDICT[converges], applicable=True,
        reason=None, blockers=[], converges=converges,
        eta_s=42.0 if converges else None, downtime_ms=120.0, passes=3,
        bandwidth_bytes_per_s=100 * 2**20, bandwidth_source="configured",
        dirty_bytes_per_s=20 * 2**20, dirty_source="calc-dirty-rate", downtime_limit_ms=300.0,
        remaining_bytes=2**30, vfio_bytes=0, model="m", notes=["why"],
        recommendations=[
            Recommendation(action="postcopy", value=None, reason="r1", applicable=False),
            Recommendation(action="dirty-limit", value=40.0, reason="r2", applicable=True),
        ] if converges is False else [])


# --- the decision --------------------------------------------------------------------------


def test_migratable_and_converging_is_admitted() -> None:
    verdict = judge(ONLINE, info(), blockers(), forecast(), allow_unknown=False)
    assert verdict.admit and verdict.reasons == ()
    assert verdict.summary == (
        "admit: VM vm1 on h1 is migratable; forecast: converges (dirty 20.0 MiB/s, "
        "bandwidth 100.0 MiB/s, downtime 120 ms, limit 300 ms, ETA 42 s)")


def test_every_reason_is_one_line() -> None:
    stale = Presence("h1", "vm1", None, "offline")
    verdict = judge(stale, info(), blockers(False), forecast(False), allow_unknown=False)
    assert not verdict.admit and verdict.summary == ""
    assert verdict.reasons == (
        "status: VM vm1 on h1 is offline (host unknown): its retained state may be stale",
        f"blocker: {BLOCKER.text} (remedy: bind a variant driver)",
        "blocker: a read-write vvfat drive (reported by QEMU)",
        "forecast: will not converge (dirty 20.0 MiB/s, bandwidth 100.0 MiB/s, "
        "downtime 120 ms, limit 300 ms): why",
        "recommendation: dirty-limit 40: r2",
        "recommendation: postcopy: r1 (not applicable here)",
    )


@pytest.mark.parametrize(("allow", "admit"), [(False, False), (True, True)])
def test_unknown_or_missing_state_needs_allow_unknown(allow: bool, admit: bool) -> None:
    assert judge(ONLINE, info(), blockers(), forecast(None), allow).admit is admit
    assert judge(ONLINE, info(), None, forecast(), allow).admit is admit
    assert judge(ONLINE, None, blockers(), forecast(), allow).admit is admit
    missing = judge(ONLINE, info(), blockers(), None, allow)
    assert missing.admit is admit
    assert missing.summary == ("admit: VM vm1 on h1 is migratable; forecast: none (allowed)"
                               if admit else "")


def test_a_blocked_vm_is_denied_even_with_allow_unknown() -> None:
    bare = blockers(False).model_copy(update={"predicted": [], "observed": []})
    assert judge(ONLINE, info(), bare, forecast(), True).reasons == (
        "blocker: not migratable (QEMU gave no reason)",)


@pytest.mark.parametrize(("run_state", "migrating", "role", "words"), [
    ("inmigrate", False, "incoming-waiting", "waiting for an incoming migration"),
    ("inmigrate", True, "incoming-receiving", "receiving an incoming migration"),
    ("paused", False, "paused", "paused"),
    ("postmigrate", False, "migrated-away", "migrated away"),
    ("running", True, "migrating-out", "a migration out is under way"),
    ("prelaunch", False, "prelaunch", "never started"),
])
def test_a_vm_that_is_not_running_is_denied_by_its_role_even_with_allow_unknown(
    run_state: str, migrating: bool, role: VmRole, words: str,
) -> None:
    not_applicable = forecast(None).model_copy(update={
        "verdict": "not-applicable", "applicable": False, "reason": "r", "notes": []})
    vm = info(run_state, migrating=migrating)
    verdict = judge(ONLINE, vm, blockers(), not_applicable, allow_unknown=True)
    assert not verdict.admit
    assert verdict.reasons == (f"role: {vm.role_reason} ({role}, run state {run_state})",)
    assert words in verdict.reasons[0]


def test_a_blocked_forecast_is_explained_by_the_blockers_alone() -> None:
    blocked = forecast(None).model_copy(update={
        "verdict": "blocked", "reason": "QEMU refuses", "blockers": [BLOCKER.text],
        "downtime_ms": None, "notes": []})
    assert judge(ONLINE, info(), blockers(False), blocked, True).reasons == (
        f"blocker: {BLOCKER.text} (remedy: bind a variant driver)",
        "blocker: a read-write vvfat drive (reported by QEMU)")
    # retained blockers that disagree (older than the forecast): the forecast says why
    assert judge(ONLINE, info(), blockers(), blocked, True).reasons == (
        "forecast: blocked (dirty 20.0 MiB/s, bandwidth 100.0 MiB/s, limit 300 ms): "
        "QEMU refuses",)


def test_forecast_line_leaves_out_what_is_unknown() -> None:
    f = forecast(None).model_copy(update={"dirty_bytes_per_s": None, "eta_s": None,
                                          "downtime_ms": None})
    assert forecast_line(f) == "forecast: unknown (bandwidth 100.0 MiB/s, limit 300 ms): why"


# --- the command, with a stub broker -------------------------------------------------------


def retained(host: str, *, vm_status: str = "online", converges: bool | None = True,
             ts: float = 100.0) -> dict[str, bytes]:
    base = f"qmpdirty/{host}"
    return {f"{base}/status": b"online", f"{base}/vm/vm1/status": vm_status.encode(),
            f"{base}/vm/vm1/info": info(ts=ts, host=host).model_dump_json().encode(),
            f"{base}/vm/vm1/blockers": blockers(ts=ts, host=host).model_dump_json().encode(),
            f"{base}/vm/vm1/forecast": forecast(converges, ts, host).model_dump_json().encode()}


def stub(answer: dict[str, bytes] | Exception) -> Any:
    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        coro.close()
        if isinstance(answer, Exception):
            raise answer
        return answer
    return run


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "q.toml"
    path.write_text('[host]\nname = "h1"\n')
    return path


def admit(config: Path, answer: dict[str, bytes] | Exception, *args: str,
          capsys: pytest.CaptureFixture[str], host: str | None = None) -> tuple[int, str, str]:
    code = admit_command("vm1", config=config, host=host, timeout_s=1, as_json="json" in args,
                         allow_unknown=False, run=stub(answer))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_is_the_model(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = admit(config, retained("h1", converges=False), "json", capsys=capsys)
    report = AdmitReport.model_validate_json(out)
    assert code == report.exit_code == 1 and report.admit is False
    assert list(json.loads(out)) == ["vm", "host", "reasons", "summary", "error", "role",
                                     "role_reason", "blockers", "forecast", "status",
                                     "exit_code", "admit"]
    assert report.role == "running" and report.role_reason == "the guest is running"
    assert report.forecast is not None and report.forecast.converges is False
    assert report.status == "online" and report.reasons[0].startswith("forecast: will not")


def test_text_and_json_are_the_one_report(config: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = admit(config, retained("h1"), capsys=capsys)
    _, out, _ = admit(config, retained("h1"), "json", capsys=capsys)
    report = AdmitReport.model_validate_json(out)
    assert code == report.exit_code == 0 and report.admit is True
    assert text.splitlines() == report.text_lines() == [report.summary]
    assert report.summary is not None and report.summary.startswith("admit: VM vm1 on h1 ")


@pytest.mark.parametrize(("answer", "error"), [
    (SinkError("MQTT x: refused"), "cannot reach the broker: MQTT x: refused"),
    ({}, "nothing retained for VM vm1 on host h1 under qmpdirty/ (is qmpdirty running "
         "there?)"),
    ({"qmpdirty/h1/vm/vm1/forecast": b"{}"},
     "the retained forecast on h1 is not a valid payload: 22 error(s)"),
])
def test_no_verdict_exits_3_on_stderr(config: Path, capsys: pytest.CaptureFixture[str],
                                      answer: dict[str, bytes] | Exception, error: str) -> None:
    assert admit(config, answer, capsys=capsys) == (3, "", f"admit: {error}\n")
    code, out, _ = admit(config, answer, "json", capsys=capsys)
    report = json.loads(out)
    assert code == 3 and report["error"] == error and report["exit_code"] == 3
    assert list(report) == list(AdmitReport.model_fields), "the same keys on every path"
    assert report["status"] is None


def test_any_host_takes_the_online_one_then_the_newest() -> None:
    topics = Topics("qmpdirty", "+")
    hosts = group_by_host({**retained("a", ts=50.0), **retained("b", ts=70.0),
                           **retained("c", vm_status="offline", ts=90.0),
                           "qmpdirty/d/vm/vm1/status": b"online"}, topics, "vm1")
    assert sorted(hosts) == ["a", "b", "c", "d"]
    assert hosts["c"].vm_status == "offline" and hosts["d"].blockers is None
    chosen = pick(hosts, "+")
    assert chosen is not None and chosen.host == "b"
    assert pick(hosts, "d") is None  # a status alone is nothing to judge


def test_any_host_prefers_the_source_to_a_waiting_destination() -> None:
    waiting = {**retained("dst", ts=90.0), "qmpdirty/dst/vm/vm1/info":
               info("inmigrate", ts=90.0, host="dst").model_dump_json().encode()}
    hosts = group_by_host({**retained("src", ts=50.0), **waiting}, Topics("qmpdirty", "+"),
                          "vm1")
    chosen = pick(hosts, "+")
    assert chosen is not None and chosen.host == "src"
