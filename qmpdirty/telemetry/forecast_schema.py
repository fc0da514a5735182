"""The forecast's payload models: the retained ``forecast`` and the part of ``migration``
(pure core).

Stage: telemetry. Part of ``schema`` (which re-exports them, and from which
``docs/schema/*.json`` is generated). Units are in key names; a range is ``<name>_low``
and ``<name>_high`` beside its central ``<name>`` (README § Dirty rate, forecast and
advice). Must not do I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qmpdirty.decisions.migration.claim import ForecastVerdict
from qmpdirty.decisions.migration.firstpass import FirstPassSource
from qmpdirty.decisions.migration.uncertainty import ModelVerdict
from qmpdirty.facts.qemu import DIRTY_LIMIT, release_text
from qmpdirty.telemetry.payload import VmPayload


class Recommendation(BaseModel):
    """One way to make a non-converging migration converge (advice by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["downtime-limit", "dirty-limit", "auto-converge", "postcopy", "bandwidth"]
    value: float | None = Field(description="downtime-limit ms, vcpu-dirty-limit MB/s, "
                                "max-bandwidth bytes/s; null for capabilities")
    reason: str
    applicable: bool = Field(description="QEMU and this VM support it (e.g. no postcopy with "
                             f"VFIO, dirty-limit needs QEMU >= {release_text(DIRTY_LIMIT)} "
                             "and a KVM dirty ring)")
    applied: bool = Field(default=False, description="the daemon applied it (opt-in policy)")


class ForecastSummary(BaseModel):
    """The forecast inside ``migration`` (updated every poll and pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: ModelVerdict | None = Field(
        default=None, description="converges, does-not-converge, uncertain (only the "
        "favourable end of the inputs converges) or unknown (an input is missing)")
    converges: bool | None = Field(description="true only with verdict converges, false "
                                   "only with does-not-converge; else null")
    eta_s: float | None = Field(description="from now to completion, downtime included, "
                                "at the inputs' central values")
    eta_s_low: float | None = Field(default=None, description="the ETA at the favourable "
                                    "end of the inputs (less dirtying, more bandwidth, "
                                    "less content left in the bulk pass)")
    eta_s_high: float | None = Field(default=None, description="the ETA at the other end; "
                                     "null when that end does not converge")
    downtime_ms: float | None
    downtime_ms_low: float | None = Field(default=None, description="least downtime of "
                                          "the three runs (central and both ends)")
    downtime_ms_high: float | None = Field(default=None, description="most downtime of "
                                           "the three runs")
    passes: int | None = Field(description="pre-copy passes the migration will have run at "
                               "switchover, those done included")
    passes_remaining: int | None = Field(description="of those, the ones still to run, the "
                                         "one under way included")


class ForecastPayload(VmPayload):
    """``vm/<vm>/forecast`` (retained): will a migration started now converge?"""

    verdict: ForecastVerdict = Field(description="converges, does-not-converge, uncertain "
                                     "(it converges at the favourable end of the inputs' "
                                     "ranges, not at the other), blocked, not-applicable "
                                     "or unknown (an input is missing)")
    applicable: bool = Field(description="false when the VM's role has no pre-migration "
                             "forecast (not running, or migrating); reason says why")
    reason: str | None = Field(description="why not applicable, or why blocked")
    blockers: list[str] = Field(description="what blocks migration (verdict blocked)")
    converges: bool | None = Field(description="true only with verdict converges, false "
                                   "only with does-not-converge; null otherwise")
    eta_s: float | None = Field(description="from the start to completion, downtime "
                                "included, at the inputs' central values")
    eta_s_low: float | None = Field(default=None, description="the ETA at the favourable "
                                    "end: dirty rate low, bandwidth high, least content")
    eta_s_high: float | None = Field(default=None, description="the ETA at the other end; "
                                     "null when that end does not converge")
    downtime_ms: float | None
    downtime_ms_low: float | None = Field(default=None, description="least downtime of "
                                          "the three runs (central and both ends)")
    downtime_ms_high: float | None = Field(default=None, description="most downtime of "
                                           "the three runs")
    passes: int | None = Field(description="pre-copy passes expected before switchover")
    bandwidth_bytes_per_s: float | None
    bandwidth_bytes_per_s_low: float | None = Field(
        default=None, description="low end of the bandwidth (measured: the last "
        "migration's lowest reading); equal to bandwidth_bytes_per_s when exact")
    bandwidth_bytes_per_s_high: float | None = Field(default=None)
    bandwidth_source: Literal["configured", "measured", "max-bandwidth", "qemu-default",
                              "unknown"] = Field(
        description="configured ([forecast] bandwidth_bytes_per_s), measured (the last "
        "migration), max-bandwidth (set on QEMU), qemu-default (QEMU's 128 MiB/s that "
        "nobody set: a guess, see notes) or unknown")
    dirty_bytes_per_s: float | None
    dirty_bytes_per_s_low: float | None = Field(
        default=None, description="dirty_bytes_per_s x (1 - dirty_error_bound_rel)")
    dirty_bytes_per_s_high: float | None = Field(
        default=None, description="dirty_bytes_per_s x (1 + dirty_error_bound_rel)")
    dirty_error_bound_rel: float | None = Field(
        default=None, description="the measurement's 95 % relative error bound "
        "(dirty_rate's error_bound_rel); null: unknown, the rate is taken as exact")
    dirty_source: str | None = Field(description="calc-dirty-rate, migration or estimate")
    downtime_limit_ms: float | None
    remaining_bytes: int | None = Field(description="bytes the first pass covers (all of RAM)")
    first_pass_content_bytes: float | None = Field(
        default=None, description="of those, bytes with content, which the first pass "
        "sends in full (a zero page costs 9 bytes): the central figure")
    first_pass_content_bytes_low: float | None = Field(default=None)
    first_pass_content_bytes_high: float | None = Field(default=None)
    first_pass_source: FirstPassSource | None = Field(
        default=None, description="what the content estimate rests on: guest-stats (the "
        "balloon driver's free memory), previous-migration (its bulk pass), host-memory "
        "(what the host backs of the guest's RAM: an upper bound) or unknown (0 to all "
        "of RAM)")
    vfio_bytes: int | None = Field(description="assumed VFIO stop-copy bytes")
    recommendations: list[Recommendation]
    model: str = Field(description="model name; see README § Forecast")
    notes: list[str]
