"""``qmpdirty admit VM``: may this VM live-migrate now? (shell, a one-shot command).

Stage: shell. Reads the VM's retained ``status``, ``blockers`` and ``forecast`` (and the
host's ``status``) from the broker with ``sinks.retained.read_retained``, validates them
with the payload models and decides with ``judge``, which is pure. Exit codes:

* 0 — migratable and the forecast converges (an unknown or missing forecast only with
  ``--allow-unknown``);
* 1 — not admitted: one reason per line on stdout (blockers with their remedies, the
  forecast's verdict, its recommendations, stale state);
* 2 — bad usage or configuration;
* 3 — the broker cannot be reached, or nothing (valid) is retained for the VM.

This module must not publish, talk to QEMU, or admit on state it could not read.
``--host +`` looks at every host and takes the one where the VM is online: on a
migration's destination (the libvirt ``migrate`` hook) the source host is not known.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from qmpdirty.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    Runner,
    load_or_print,
    mib,
)
from qmpdirty.config import Config
from qmpdirty.errors import SinkError
from qmpdirty.sinks.retained import read_retained
from qmpdirty.telemetry.schema import BlockersPayload, ForecastPayload
from qmpdirty.telemetry.topics import TopicKind, Topics, sanitise

M = TypeVar("M", bound=BaseModel)

#: Exit codes: admitted, not admitted (the reasons are printed).
EXIT_ADMIT, EXIT_DENY = EXIT_OK, EXIT_FAILURE
ANY_HOST = "+"


@dataclass
class Retained:
    """What one host has retained about the VM (raw; ``None`` = nothing)."""

    host: str
    vm: str
    host_status: str | None = None
    vm_status: str | None = None
    blockers: bytes | None = None
    forecast: bytes | None = None

    @property
    def online(self) -> bool:
        return self.host_status == "online" and self.vm_status == "online"


@dataclass
class Verdict:
    admit: bool
    reasons: list[str] = field(default_factory=list)
    summary: str = ""


def blocker_reasons(blockers: BlockersPayload) -> list[str]:
    """One line per blocker: predicted ones with their remedy, then QEMU's others."""
    if blockers.migratable:
        return []
    lines = [f"blocker: {b.text} (remedy: {b.remedy})" for b in blockers.predicted]
    predicted = {b.text for b in blockers.predicted}
    lines += [f"blocker: {text} (reported by QEMU)" for text in blockers.observed
              if text not in predicted]
    return lines or ["blocker: not migratable (QEMU gave no reason)"]


def forecast_line(forecast: ForecastPayload) -> str:
    """The forecast's verdict in one line, with the figures it rests on."""
    figures = [
        f"dirty {mib(forecast.dirty_bytes_per_s, 1)}/s"
        if forecast.dirty_bytes_per_s is not None else "",
        f"bandwidth {mib(forecast.bandwidth_bytes_per_s, 1)}/s"
        if forecast.bandwidth_bytes_per_s is not None else "",
        f"downtime {forecast.downtime_ms:.0f} ms" if forecast.downtime_ms is not None else "",
        f"limit {forecast.downtime_limit_ms:.0f} ms"
        if forecast.downtime_limit_ms is not None else "",
        f"ETA {forecast.eta_s:.0f} s" if forecast.eta_s is not None else "",
    ]
    verdict = {True: "converges", False: "will not converge", None: "unknown"}[
        forecast.converges]
    detail = ", ".join(f for f in figures if f)
    notes = "; ".join(forecast.notes)
    return f"forecast: {verdict}" + (f" ({detail})" if detail else "") + \
        (f": {notes}" if notes and forecast.converges is not True else "")


def recommendation_lines(forecast: ForecastPayload) -> list[str]:
    out = []
    for r in sorted(forecast.recommendations, key=lambda r: not r.applicable):
        value = f" {r.value:g}" if r.value is not None else ""
        tail = "" if r.applicable else " (not applicable here)"
        out.append(f"recommendation: {r.action}{value}: {r.reason}{tail}")
    return out


def judge(
    state: Retained, blockers: BlockersPayload | None, forecast: ForecastPayload | None,
    allow_unknown: bool,
) -> Verdict:
    """Admit, or deny with reasons (pure)."""
    reasons: list[str] = []
    where = f"VM {state.vm} on {state.host}"
    if not state.online:
        reasons.append(f"status: {where} is {state.vm_status or 'unknown'} (host "
                       f"{state.host_status or 'unknown'}): its retained state may be stale")
    if blockers is None:
        if not allow_unknown:
            reasons.append(f"blockers: none published for {where} ([vfio] enabled there?)")
    else:
        reasons += blocker_reasons(blockers)
    if forecast is None:
        if not allow_unknown:
            reasons.append(f"forecast: none published for {where}")
    elif forecast.converges is False or (forecast.converges is None and not allow_unknown):
        reasons.append(forecast_line(forecast))
        reasons += recommendation_lines(forecast)
    if reasons:
        return Verdict(False, reasons)
    line = forecast_line(forecast) if forecast is not None else "forecast: none (allowed)"
    return Verdict(True, [], f"admit: {where} is migratable; {line}")


def group_by_host(retained: dict[str, bytes], topics: Topics, vm: str) -> dict[str, Retained]:
    """Split ``read_retained``'s answer by the host level of each topic."""
    depth = len(topics.prefix.split("/"))
    suffixes = {f"vm/{vm}/{TopicKind.VM_STATUS.suffix}": "vm_status",
                f"vm/{vm}/{TopicKind.BLOCKERS.suffix}": "blockers",
                f"vm/{vm}/{TopicKind.FORECAST.suffix}": "forecast",
                TopicKind.HOST_STATUS.suffix: "host_status"}
    hosts: dict[str, Retained] = {}
    for topic, payload in retained.items():
        levels = topic.split("/")
        host, rest = levels[depth], "/".join(levels[depth + 1:])
        attr = suffixes.get(rest)
        if attr is None:
            continue
        state = hosts.setdefault(host, Retained(host, vm))
        value: str | bytes = payload.decode("utf-8", "replace") if attr.endswith("status") \
            else payload
        setattr(state, attr, value)
    return hosts


def pick(hosts: dict[str, Retained], host: str) -> Retained | None:
    """The host's state; with ``+`` the host where the VM is online (newest wins)."""
    known = {h: s for h, s in hosts.items() if s.blockers is not None or s.forecast is not None}
    if host != ANY_HOST:
        return known.get(host)
    ranked = sorted(known.values(), key=lambda s: (s.online, _newest_ts(s)), reverse=True)
    return ranked[0] if ranked else None


def _newest_ts(state: Retained) -> float:
    stamps = []
    for raw in (state.blockers, state.forecast):
        try:
            value = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("ts"), int | float):
            stamps.append(float(value["ts"]))
    return max(stamps, default=0.0)


def _filters(topics: Topics, vm: str) -> list[str]:
    return [topics.host_topic(TopicKind.HOST_STATUS)] + [
        topics.vm_topic(vm, kind)
        for kind in (TopicKind.VM_STATUS, TopicKind.BLOCKERS, TopicKind.FORECAST)
    ]


def _parse(state: Retained) -> tuple[BlockersPayload | None, ForecastPayload | None]:
    """Validate with the payload models; a bad payload raises ValueError naming it."""
    where = f"on {state.host}"
    return (_validated(BlockersPayload, state.blockers, f"blockers {where} are"),
            _validated(ForecastPayload, state.forecast, f"forecast {where} is"))


def _validated(model: type[M], raw: bytes | None, subject: str) -> M | None:
    """``raw`` as ``model``; ``subject`` names it in the error ("forecast on h is")."""
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(f"the retained {subject} not a valid payload: "
                         f"{exc.error_count()} error(s)") from None


def _emit(as_json: bool, code: int, report: dict[str, Any], lines: list[str]) -> int:
    if as_json:
        print(json.dumps({**report, "exit_code": code, "admit": code == EXIT_ADMIT},
                         indent=2))
    else:
        for line in lines:
            print(line, file=sys.stderr if code == EXIT_UNKNOWN else sys.stdout)
    return code


def admit_command(
    vm: str, *, config: Path, host: str | None, timeout_s: float, as_json: bool,
    allow_unknown: bool, run: Runner,
) -> int:
    """``qmpdirty admit``: read, judge, print; returns the exit code."""
    cfg = load_or_print(config)
    if cfg is None:
        return EXIT_USAGE
    if not timeout_s > 0:
        print("--timeout: must be more than 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    return _admit(cfg, sanitise(vm), host=host, timeout_s=timeout_s, as_json=as_json,
                  allow_unknown=allow_unknown, run=run)


def _admit(cfg: Config, vm: str, *, host: str | None, timeout_s: float, as_json: bool,
           allow_unknown: bool, run: Runner) -> int:
    base = Topics.create(cfg.mqtt.topic_prefix, cfg.host.resolved_name)
    wanted = host if host == ANY_HOST else sanitise(host) if host else base.host
    topics = Topics(base.prefix, wanted)
    report: dict[str, Any] = {"vm": vm, "host": wanted, "reasons": [], "error": None,
                              "blockers": None, "forecast": None}
    try:
        hosts = group_by_host(run(read_retained(cfg.mqtt, _filters(topics, vm), timeout_s)),
                              topics, vm)
    except SinkError as exc:
        report["error"] = f"cannot reach the broker: {exc}"
        return _emit(as_json, EXIT_UNKNOWN, report, [f"admit: {report['error']}"])
    state = pick(hosts, wanted)
    if state is None:
        where = "any host" if wanted == ANY_HOST else f"host {wanted}"
        report["error"] = (f"nothing retained for VM {vm} on {where} under "
                           f"{topics.prefix}/ (is qmpdirty running there?)")
        return _emit(as_json, EXIT_UNKNOWN, report, [f"admit: {report['error']}"])
    report["host"] = state.host
    try:
        blockers, forecast = _parse(state)
    except ValueError as exc:
        report["error"] = str(exc)
        return _emit(as_json, EXIT_UNKNOWN, report, [f"admit: {exc}"])
    verdict = judge(state, blockers, forecast, allow_unknown)
    report.update(reasons=verdict.reasons, status=state.vm_status,
                  blockers=blockers.model_dump(by_alias=True) if blockers else None,
                  forecast=forecast.model_dump(by_alias=True) if forecast else None)
    code = EXIT_ADMIT if verdict.admit else EXIT_DENY
    return _emit(as_json, code, report, [verdict.summary] if verdict.admit else verdict.reasons)
