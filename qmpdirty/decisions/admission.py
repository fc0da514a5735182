"""May this VM live-migrate now? The verdict behind ``qmpdirty admit`` (pure core).

Stage: decisions. ``judge`` takes what one host retained about the VM: the VM's and
the host's status (a ``Presence``), and its ``info``, ``blockers`` and ``forecast``
payloads. It reads those through the small protocols below, which the payload models
of ``telemetry.schema`` satisfy (decisions cannot import telemetry). The rules, after
design.md § What the published state must mean:

* retained state of a VM or host that is not online may be stale: deny;
* role first: a VM that is not ``running`` (a destination waiting for or receiving a
  migration, a paused, migrating or migrated-away guest...) denies, with the reason;
* a blocker denies, with its remedy (QEMU's own reasons too);
* a forecast that does not converge denies, with its recommendations; one that is
  ``blocked`` or ``not-applicable`` denies by the blockers or the role it names;
* a missing, unknown or ``uncertain`` forecast (it converges at one end of its inputs'
  ranges only; or missing info or blockers) denies unless allowed;
* the forecast's line gives its ETA range and says when its bandwidth is QEMU's
  default ``max-bandwidth`` rather than a measured or configured one.

Outcomes are values (``Verdict``), one reason per line. This module must not read the
broker, print, exit or look at the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MIB = 1 << 20
_VERDICT_WORDS = {"converges": "converges", "does-not-converge": "will not converge",
                  "uncertain": "uncertain (converges only at the favourable end of its "
                  "inputs)", "blocked": "blocked", "not-applicable": "not applicable"}
#: Verdicts whose reason is a role or blockers: their own lines say it, not the figures.
_EXPLAINED = ("blocked", "not-applicable")


class PredictedBlocker(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def remedy(self) -> str: ...


class Blockers(Protocol):
    """What ``judge`` reads of a ``blockers`` payload."""

    @property
    def migratable(self) -> bool: ...
    @property
    def predicted(self) -> Sequence[PredictedBlocker]: ...
    @property
    def observed(self) -> Sequence[str]: ...


class Info(Protocol):
    """What ``judge`` reads of an ``info`` payload."""

    @property
    def role(self) -> str: ...
    @property
    def role_reason(self) -> str: ...
    @property
    def run_state(self) -> str | None: ...


class Recommendation(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def applicable(self) -> bool: ...


class Forecast(Protocol):
    """What ``judge`` reads of a ``forecast`` payload."""

    @property
    def verdict(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def converges(self) -> bool | None: ...
    @property
    def eta_s(self) -> float | None: ...
    @property
    def eta_s_low(self) -> float | None: ...
    @property
    def eta_s_high(self) -> float | None: ...
    @property
    def downtime_ms(self) -> float | None: ...
    @property
    def downtime_limit_ms(self) -> float | None: ...
    @property
    def bandwidth_bytes_per_s(self) -> float | None: ...
    @property
    def bandwidth_source(self) -> str: ...
    @property
    def dirty_bytes_per_s(self) -> float | None: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def recommendations(self) -> Sequence[Recommendation]: ...


@dataclass(frozen=True, slots=True)
class Presence:
    """Where the retained state comes from, and whether that VM and host are online."""

    host: str
    vm: str
    host_status: str | None
    vm_status: str | None

    @property
    def online(self) -> bool:
        return self.host_status == "online" and self.vm_status == "online"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Admitted (with a one-line ``summary``) or not (with one line per reason)."""

    admit: bool
    reasons: tuple[str, ...] = ()
    summary: str = ""


def blocker_reasons(blockers: Blockers) -> list[str]:
    """One line per blocker: predicted ones with their remedy, then QEMU's others."""
    if blockers.migratable:
        return []
    lines = [f"blocker: {b.text} (remedy: {b.remedy})" for b in blockers.predicted]
    predicted = {b.text for b in blockers.predicted}
    lines += [f"blocker: {text} (reported by QEMU)" for text in blockers.observed
              if text not in predicted]
    return lines or ["blocker: not migratable (QEMU gave no reason)"]


def forecast_line(forecast: Forecast) -> str:
    """The forecast's verdict in one line, with the figures it rests on."""
    f = forecast
    guess = " (QEMU's default max-bandwidth, not measured)" \
        if f.bandwidth_source == "qemu-default" else ""
    figures = [
        f"dirty {f.dirty_bytes_per_s / MIB:.1f} MiB/s" if f.dirty_bytes_per_s is not None else "",
        f"bandwidth {f.bandwidth_bytes_per_s / MIB:.1f} MiB/s{guess}"
        if f.bandwidth_bytes_per_s is not None else "",
        f"downtime {f.downtime_ms:.0f} ms" if f.downtime_ms is not None else "",
        f"limit {f.downtime_limit_ms:.0f} ms" if f.downtime_limit_ms is not None else "",
        _eta(f),
    ]
    verdict = _VERDICT_WORDS.get(f.verdict, f.verdict)
    detail = ", ".join(figure for figure in figures if figure)
    notes = "; ".join(f.notes) if f.verdict not in _EXPLAINED else (f.reason or "")
    return f"forecast: {verdict}" + (f" ({detail})" if detail else "") + \
        (f": {notes}" if notes and f.verdict != "converges" else "")


def _eta(f: Forecast) -> str:
    """``ETA 6 s (5-25 s)``: the central figure and its range, when they are known."""
    def secs(x: float) -> str:
        return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"

    if f.eta_s is None and f.eta_s_low is None:
        return ""
    central = f"ETA {secs(f.eta_s)}" if f.eta_s is not None else "ETA"
    low, high = f.eta_s_low, f.eta_s_high
    if low is None or (high is not None and secs(low) == secs(high)):
        return central
    return f"{central} ({secs(low)} to {secs(high) if high is not None else 'never'})"


def role_line(info: Info) -> str:
    """Why a VM that is not running is not admitted, in one line."""
    return f"role: {info.role_reason} ({info.role}, run state {info.run_state or 'unknown'})"


def recommendation_lines(forecast: Forecast) -> list[str]:
    """The recommendations, the applicable ones first."""
    out = []
    for r in sorted(forecast.recommendations, key=lambda r: not r.applicable):
        value = f" {r.value:g}" if r.value is not None else ""
        tail = "" if r.applicable else " (not applicable here)"
        out.append(f"recommendation: {r.action}{value}: {r.reason}{tail}")
    return out


def judge(
    presence: Presence, info: Info | None, blockers: Blockers | None,
    forecast: Forecast | None, allow_unknown: bool,
) -> Verdict:
    """Admit, or deny with reasons."""
    reasons: list[str] = []
    where = f"VM {presence.vm} on {presence.host}"
    if not presence.online:
        reasons.append(f"status: {where} is {presence.vm_status or 'unknown'} (host "
                       f"{presence.host_status or 'unknown'}): its retained state may be stale")
    if info is None:
        if not allow_unknown:
            reasons.append(f"info: none published for {where}")
    elif info.role != "running":
        reasons.append(role_line(info))
    if blockers is None:
        if not allow_unknown:
            reasons.append(f"blockers: none published for {where} ([vfio] enabled there?)")
    else:
        reasons += blocker_reasons(blockers)
    explained = (info is not None and info.role != "running") or bool(
        blockers is not None and not blockers.migratable)
    reasons += _forecast_reasons(where, forecast, allow_unknown, explained=explained)
    if reasons:
        return Verdict(False, tuple(reasons))
    line = forecast_line(forecast) if forecast is not None else "forecast: none (allowed)"
    return Verdict(True, (), f"admit: {where} is migratable; {line}")


def _forecast_reasons(where: str, forecast: Forecast | None, allow_unknown: bool, *,
                      explained: bool) -> list[str]:
    """The forecast's lines: none when it converges (or is unknown and that is
    allowed), nor when it is blocked or not applicable and the role or blockers already
    said why (``explained``)."""
    if forecast is None:
        return [] if allow_unknown else [f"forecast: none published for {where}"]
    match forecast.verdict:
        case "converges":
            return []
        case "does-not-converge":
            return [forecast_line(forecast), *recommendation_lines(forecast)]
        case "uncertain":
            return [] if allow_unknown else [forecast_line(forecast),
                                             *recommendation_lines(forecast)]
        case "blocked" | "not-applicable":
            return [] if explained else [forecast_line(forecast)]
        case _:  # unknown, or a verdict this version does not know
            return [] if allow_unknown else [forecast_line(forecast)]
