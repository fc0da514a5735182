"""``qmpdirty admit VM``: may this VM live-migrate now? (shell, a one-shot command).

Stage: cli. Reads the VM's retained ``status``, ``info`` (its role), ``blockers`` and
``forecast`` (and the host's ``status``) from the broker with
``sinks.retained.read_retained``, validates them with the payload models and decides
with ``decisions.admission.judge``, which is pure. It prints an ``AdmitReport``: as
text (the reasons, one per line) or, with ``--json``, as one object. Exit codes:

* 0 — running, migratable and the forecast converges (an unknown or missing forecast,
  info or blockers only with ``--allow-unknown``);
* 1 — not admitted: one reason per line on stdout (the role when the VM is not
  running, blockers with their remedies, the forecast's verdict, its recommendations,
  stale state);
* 2 — bad usage or configuration;
* 3 — the broker cannot be reached, or nothing (valid) is retained for the VM.

This module must not publish, talk to QEMU, or admit on state it could not read.
``--host +`` looks at every host and takes the one where the VM is online: on a
migration's destination (the libvirt ``migrate`` hook) the source host is not known.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qmpdirty.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    Runner,
    load_or_print,
)
from qmpdirty.config.load import Config
from qmpdirty.decisions.admission import Presence, judge
from qmpdirty.errors import PayloadError, SinkError
from qmpdirty.sinks.retained import read_retained
from qmpdirty.telemetry.schema import BlockersPayload, ForecastPayload, InfoPayload
from qmpdirty.telemetry.topics import TopicKind, Topics, sanitise

M = TypeVar("M", bound=BaseModel)

#: Exit codes: admitted, not admitted (the reasons are printed).
EXIT_ADMIT, EXIT_DENY = EXIT_OK, EXIT_FAILURE
ANY_HOST = "+"
#: The VM topics admit reads.
_VM_KINDS = (TopicKind.VM_STATUS, TopicKind.INFO, TopicKind.BLOCKERS, TopicKind.FORECAST)


@dataclass
class Retained:
    """What one host has retained about the VM (raw; ``None`` = nothing)."""

    host: str
    vm: str
    host_status: str | None = None
    vm_status: str | None = None
    info: bytes | None = None
    blockers: bytes | None = None
    forecast: bytes | None = None

    @property
    def presence(self) -> Presence:
        return Presence(self.host, self.vm, self.host_status, self.vm_status)


class AdmitReport(BaseModel):
    """The answer: ``--json`` prints it whole, the text is ``text_lines``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vm: str
    host: str = Field(description="the host whose retained state was judged (or wanted)")
    reasons: list[str] = Field(default_factory=list, description="why not admitted")
    summary: str | None = Field(default=None, description="admitted: the one line the "
                                "text prints (the forecast's verdict)")
    error: str | None = Field(default=None, description="why no verdict (exit 3)")
    role: str | None = Field(default=None, description="the VM's role (README § Role); "
                             "null when no info is retained")
    role_reason: str | None = None
    blockers: BlockersPayload | None = None
    forecast: ForecastPayload | None = None
    status: str | None = Field(default=None, description="the VM's retained status; "
                               "null when the broker gave none")
    exit_code: int
    admit: bool

    def text_lines(self) -> list[str]:
        """The text form: the error, else the summary when admitted, else the reasons."""
        if self.error is not None:
            return [f"admit: {self.error}"]
        return [self.summary or ""] if self.admit else list(self.reasons)


class _Stamp(BaseModel):
    """The ``ts`` of a retained payload, whatever else it holds (to rank hosts)."""

    model_config = ConfigDict(strict=True)

    ts: float


class _Role(BaseModel):
    """The ``role`` of a retained ``info``, whatever else it holds (to rank hosts)."""

    role: str


def group_by_host(retained: dict[str, bytes], topics: Topics, vm: str) -> dict[str, Retained]:
    """Split ``read_retained``'s answer by the host level of each topic."""
    depth = len(topics.prefix.split("/"))
    kinds = {f"vm/{vm}/{kind.suffix}": kind for kind in _VM_KINDS}
    kinds[TopicKind.HOST_STATUS.suffix] = TopicKind.HOST_STATUS
    hosts: dict[str, Retained] = {}
    for topic, payload in retained.items():
        levels = topic.split("/")
        host, rest = levels[depth], "/".join(levels[depth + 1:])
        kind = kinds.get(rest)
        if kind is None:
            continue
        state = hosts.setdefault(host, Retained(host, vm))
        match kind:
            case TopicKind.HOST_STATUS:
                state.host_status = payload.decode("utf-8", "replace")
            case TopicKind.VM_STATUS:
                state.vm_status = payload.decode("utf-8", "replace")
            case TopicKind.INFO:
                state.info = payload
            case TopicKind.BLOCKERS:
                state.blockers = payload
            case TopicKind.FORECAST:
                state.forecast = payload
    return hosts


def pick(hosts: dict[str, Retained], host: str) -> Retained | None:
    """The host's state; with ``+`` the host where the VM is online, preferring one that
    is not a migration's waiting destination (newest wins)."""
    known = {h: s for h, s in hosts.items()
             if s.info is not None or s.blockers is not None or s.forecast is not None}
    if host != ANY_HOST:
        return known.get(host)
    ranked = sorted(known.values(), key=lambda s: (s.presence.online, not _incoming(s),
                                                   _newest_ts(s)), reverse=True)
    return ranked[0] if ranked else None


def _incoming(state: Retained) -> bool:
    """The retained ``info`` says the VM there is a migration's destination."""
    try:
        return state.info is not None and _Role.model_validate_json(
            state.info).role.startswith("incoming-")
    except ValidationError:
        return False


def _newest_ts(state: Retained) -> float:
    """The newest ``ts`` of the state's payloads; 0 when none has one."""
    stamps = []
    for raw in (state.info, state.blockers, state.forecast):
        if raw is None:
            continue
        try:
            stamps.append(_Stamp.model_validate_json(raw).ts)
        except ValidationError:
            continue
    return max(stamps, default=0.0)


def _filters(topics: Topics, vm: str) -> list[str]:
    return [topics.host_topic(TopicKind.HOST_STATUS)] + [
        topics.vm_topic(vm, kind) for kind in _VM_KINDS]


def _parse(state: Retained
           ) -> tuple[InfoPayload | None, BlockersPayload | None, ForecastPayload | None]:
    """Validate with the payload models; a bad payload raises PayloadError naming it."""
    where = f"on {state.host}"
    return (_validated(InfoPayload, state.info, f"info {where} is"),
            _validated(BlockersPayload, state.blockers, f"blockers {where} are"),
            _validated(ForecastPayload, state.forecast, f"forecast {where} is"))


def _validated(model: type[M], raw: bytes | None, subject: str) -> M | None:
    """``raw`` as ``model``; ``subject`` names it in the error ("forecast on h is")."""
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise PayloadError(f"the retained {subject} not a valid payload: "
                           f"{exc.error_count()} error(s)") from None


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
    report = _admit(cfg, sanitise(vm), host=host, timeout_s=timeout_s,
                    allow_unknown=allow_unknown, run=run)
    return _emit(report, as_json)


def _admit(cfg: Config, vm: str, *, host: str | None, timeout_s: float, allow_unknown: bool,
           run: Runner) -> AdmitReport:
    """Read the retained state and judge it."""
    base = Topics.create(cfg.mqtt.topic_prefix, cfg.host.name)
    wanted = host if host == ANY_HOST else sanitise(host) if host else base.host
    topics = Topics(base.prefix, wanted)
    try:
        hosts = group_by_host(run(read_retained(cfg.mqtt, _filters(topics, vm), timeout_s)),
                              topics, vm)
    except SinkError as exc:
        return _unknown(vm, wanted, f"cannot reach the broker: {exc}")
    state = pick(hosts, wanted)
    if state is None:
        where = "any host" if wanted == ANY_HOST else f"host {wanted}"
        return _unknown(vm, wanted, f"nothing retained for VM {vm} on {where} under "
                                    f"{topics.prefix}/ (is qmpdirty running there?)")
    try:
        info, blockers, forecast = _parse(state)
    except PayloadError as exc:
        return _unknown(vm, state.host, str(exc), state.vm_status)
    verdict = judge(state.presence, info, blockers, forecast, allow_unknown)
    code = EXIT_ADMIT if verdict.admit else EXIT_DENY
    return AdmitReport(vm=vm, host=state.host, reasons=list(verdict.reasons),
                       summary=verdict.summary if verdict.admit else None,
                       role=info.role if info else None,
                       role_reason=info.role_reason if info else None,
                       blockers=blockers, forecast=forecast, status=state.vm_status,
                       exit_code=code, admit=verdict.admit)


def _unknown(vm: str, host: str, error: str, status: str | None = None) -> AdmitReport:
    """No verdict (exit 3): the report says why."""
    return AdmitReport(vm=vm, host=host, error=error, status=status, exit_code=EXIT_UNKNOWN,
                       admit=False)


def _emit(report: AdmitReport, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report.model_dump(by_alias=True), indent=2))
    else:
        out = sys.stderr if report.exit_code == EXIT_UNKNOWN else sys.stdout
        for line in report.text_lines():
            print(line, file=out)
    return report.exit_code
