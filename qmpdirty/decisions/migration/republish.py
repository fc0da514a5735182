"""Whether a VM's ``migration``, ``dirty_rate`` (in-migration and measured) and ``info``
go out again (pure core).

Stage: decisions. The migration task sees the tracker's ``MigrationChanged`` at every
poll and event, the dirty-rate task polls ``query-dirty-rate`` after each measurement,
and ``info`` is looked at whenever the run state or the migration may have moved; each
retained payload goes out only when what it says changed ("No noise"), and
``migration-status`` fires when the status did (docs/hooks.md). The
comparison is on the values the payloads are rendered from, never on rendered bytes.
No I/O: the shell keeps the last value shown and publishes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

from qmpdirty.decisions.migration.estimate import DirtyEstimate, DirtySource
from qmpdirty.decisions.migration.forecast import Advice
from qmpdirty.decisions.migration.forecaster import ForecastView
from qmpdirty.decisions.migration.tracker import Migration
from qmpdirty.decisions.migration.uncertainty import ModelVerdict
from qmpdirty.decisions.role import RoleVerdict, measures_dirty_rate, reports_dirty_rate
from qmpdirty.facts.vm import DirtyRateMeasurement, VmInfo

# --- migration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutlookShown:
    """The figures of an outlook that ``migration``'s forecast shows (the pass total
    follows from the migration's own pass count, compared beside it)."""

    verdict: ModelVerdict
    converges: bool | None
    eta_s: float | None
    eta_s_low: float | None
    eta_s_high: float | None
    downtime_ms: float | None
    downtime_ms_low: float | None
    downtime_ms_high: float | None
    passes_remaining: int | None


@dataclass(frozen=True, slots=True)
class MigrationShown:
    """What ``migration`` is rendered from (its stamp aside): the migration but its
    count of terminal polls (counting them is not news), a source's forecast, and the
    advice with whether the daemon applied each."""

    migration: Migration
    forecast: OutlookShown | None = None
    advice: tuple[tuple[Advice, bool], ...] = ()


@dataclass(frozen=True, slots=True)
class MigrationRepublish:
    """Publish ``migration`` (``publish``); fire ``migration-status`` (``status_hook``)."""

    publish: bool
    status_hook: bool = False


def migration_shown(m: Migration, view: ForecastView | None, applied: Collection[str] = ()
                    ) -> MigrationShown:
    """The values behind one ``migration`` payload (``view`` None: no forecast, as on a
    destination)."""
    if view is None:
        return MigrationShown(replace(m, terminal_polls=0))
    o, f = view.outlook, view.outlook.central
    shown = OutlookShown(
        verdict=o.verdict, converges=o.converges, eta_s=f.eta_s, eta_s_low=o.eta_s_low,
        eta_s_high=o.eta_s_high, downtime_ms=f.downtime_ms, downtime_ms_low=o.downtime_ms_low,
        downtime_ms_high=o.downtime_ms_high, passes_remaining=f.passes)
    return MigrationShown(replace(m, terminal_polls=0), shown,
                          tuple((a, a.action in applied) for a in view.advice))


def republish_migration(before: MigrationShown | None, now: MigrationShown
                        ) -> MigrationRepublish:
    """``migration`` goes out when what it shows changed; its hook fires when the status
    differs from the one last published (and for the session's first)."""
    if now == before:
        return MigrationRepublish(publish=False)
    moved = before is None or before.migration.status != now.migration.status
    return MigrationRepublish(publish=True, status_hook=moved)


# --- the in-migration dirty rate -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateShown:
    """What identifies an in-migration ``dirty_rate``: the figure, where it came from
    and how it was counted (its basis and bound follow from these)."""

    bytes_per_s: float
    source: DirtySource
    mode: str


def rate_to_publish(d: DirtyEstimate | None, role: RoleVerdict, before: RateShown | None
                    ) -> RateShown | None:
    """The in-migration rate to publish now, None for none: only while the guest runs
    (``reports_dirty_rate``), never a measurement's (the dirty-rate task publishes
    those), and only when it differs from the one shown last in this migration."""
    if d is None or d.source == "calc-dirty-rate" or not reports_dirty_rate(role):
        return None
    now = RateShown(d.bytes_per_s, d.source, d.mode)
    return None if now == before else now


# --- the measured dirty rate ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeasurementSeen:
    """What identifies one ``calc-dirty-rate`` result: QEMU's start time and the rate it
    found (``query-dirty-rate`` answers with the last finished one until the next ends)."""

    started_at_s: float | None
    bytes_per_s: float


def measurement_seen(found: DirtyRateMeasurement) -> MeasurementSeen:
    return MeasurementSeen(found.started_at_s, found.bytes_per_s)


#: ``publish`` it; ``withhold`` it (the role stopped measuring meanwhile: a migration or
#: a pause began), remembered as seen; ``poll`` again (QEMU's previous result again).
MeasuredAction = Literal["publish", "withhold", "poll"]


def measured_rate_action(found: DirtyRateMeasurement, role: RoleVerdict,
                         before: MeasurementSeen | None) -> MeasuredAction:
    """What the dirty-rate task does with a finished ``query-dirty-rate``: a result goes
    out only while the role measures (``measures_dirty_rate``), and only when it is not
    the one seen last (QEMU keeps reporting it until the new measurement ends)."""
    if not measures_dirty_rate(role):
        return "withhold"
    return "poll" if measurement_seen(found) == before else "publish"


# --- info ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfoShown:
    """What ``info`` is rendered from that can change within a session: its facts and
    the VM's role."""

    info: VmInfo
    role: RoleVerdict


def republish_info(before: InfoShown | None, now: InfoShown, *, always: bool = False
                   ) -> bool:
    """``info`` goes out when its facts or the role changed, and ``always`` when a
    session begins (a retained ``info`` may be a previous QEMU's)."""
    return always or now != before
