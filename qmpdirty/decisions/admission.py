"""May this VM live-migrate now? The verdict behind ``qmpdirty admit`` (pure core).

Stage: decisions. ``judge`` takes what one host retained about the VM: the VM's and
the host's status (a ``Presence``), and its ``blockers`` and ``forecast`` payloads.
It reads those through the small protocols below, which the payload models of
``telemetry.schema`` satisfy (decisions cannot import telemetry). The rules, after
design.md § What the published state must mean:

* retained state of a VM or host that is not online may be stale: deny;
* a blocker denies, with its remedy (QEMU's own reasons too);
* a forecast that does not converge denies, with its recommendations;
* a missing or unknown forecast (or missing blockers) denies unless allowed.

Outcomes are values (``Verdict``), one reason per line. This module must not read the
broker, print, exit or look at the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MIB = 1 << 20


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
    def converges(self) -> bool | None: ...
    @property
    def eta_s(self) -> float | None: ...
    @property
    def downtime_ms(self) -> float | None: ...
    @property
    def downtime_limit_ms(self) -> float | None: ...
    @property
    def bandwidth_bytes_per_s(self) -> float | None: ...
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
    figures = [
        f"dirty {f.dirty_bytes_per_s / MIB:.1f} MiB/s" if f.dirty_bytes_per_s is not None else "",
        f"bandwidth {f.bandwidth_bytes_per_s / MIB:.1f} MiB/s"
        if f.bandwidth_bytes_per_s is not None else "",
        f"downtime {f.downtime_ms:.0f} ms" if f.downtime_ms is not None else "",
        f"limit {f.downtime_limit_ms:.0f} ms" if f.downtime_limit_ms is not None else "",
        f"ETA {f.eta_s:.0f} s" if f.eta_s is not None else "",
    ]
    verdict = {True: "converges", False: "will not converge", None: "unknown"}[f.converges]
    detail = ", ".join(figure for figure in figures if figure)
    notes = "; ".join(f.notes)
    return f"forecast: {verdict}" + (f" ({detail})" if detail else "") + \
        (f": {notes}" if notes and f.converges is not True else "")


def recommendation_lines(forecast: Forecast) -> list[str]:
    """The recommendations, the applicable ones first."""
    out = []
    for r in sorted(forecast.recommendations, key=lambda r: not r.applicable):
        value = f" {r.value:g}" if r.value is not None else ""
        tail = "" if r.applicable else " (not applicable here)"
        out.append(f"recommendation: {r.action}{value}: {r.reason}{tail}")
    return out


def judge(
    presence: Presence, blockers: Blockers | None, forecast: Forecast | None,
    allow_unknown: bool,
) -> Verdict:
    """Admit, or deny with reasons."""
    reasons: list[str] = []
    where = f"VM {presence.vm} on {presence.host}"
    if not presence.online:
        reasons.append(f"status: {where} is {presence.vm_status or 'unknown'} (host "
                       f"{presence.host_status or 'unknown'}): its retained state may be stale")
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
        return Verdict(False, tuple(reasons))
    line = forecast_line(forecast) if forecast is not None else "forecast: none (allowed)"
    return Verdict(True, (), f"admit: {where} is migratable; {line}")
