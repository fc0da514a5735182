"""Forecasts and advice -> the ``forecast`` payload and ``migration``'s forecast part
(pure core).

Stage: telemetry. Takes the values of ``decisions.migration.forecast`` and
``decisions.migration.estimate`` (the daemon owns the state) and calls the payload
models with keywords. It must not decide anything nor do I/O.
"""

from __future__ import annotations

from collections.abc import Collection

from qmpdirty.decisions.migration.claim import ForecastClaim
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.migration.firstpass import Content
from qmpdirty.decisions.migration.forecast import MODEL, Advice, ForecastInputs
from qmpdirty.decisions.migration.forecaster import BandwidthSource
from qmpdirty.decisions.migration.uncertainty import Outlook, Span
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.topics import TopicKind


def summary(o: Outlook, passes_done: int) -> schema.ForecastSummary:
    """The forecast inside ``migration``: the central figures with both ends;
    ``passes`` is the total at switchover (the ``passes_done`` before the one under
    way, plus the model's remaining ones)."""
    f = o.central
    total = None if f.passes is None else passes_done + f.passes
    return schema.ForecastSummary(
        verdict=o.verdict, converges=o.converges, eta_s=f.eta_s, eta_s_low=o.eta_s_low,
        eta_s_high=o.eta_s_high, downtime_ms=f.downtime_ms,
        downtime_ms_low=o.downtime_ms_low, downtime_ms_high=o.downtime_ms_high,
        passes=total, passes_remaining=f.passes)


def recommendations(advice: tuple[Advice, ...], applied: Collection[str] = ()
                    ) -> list[schema.Recommendation]:
    return [schema.Recommendation(action=a.action, value=a.value, reason=a.reason,
                                  applicable=a.applicable, applied=a.action in applied)
            for a in advice]


def _ends(s: Span | None, central: float | None, claimed: bool
          ) -> tuple[float | None, float | None]:
    """A range's ends as published: the central value at both ends when exact."""
    if not claimed or central is None:
        return None, None
    return (s.low, s.high) if s is not None else (central, central)


def forecast(stamp: VmStamp, inputs: ForecastInputs, c: ForecastClaim, *,
             bandwidth_source: BandwidthSource, dirty: DirtyEstimate | None,
             content: Content | None = None, notes: Collection[str] = (),
             applied: Collection[str] = ()) -> Outgoing:
    """``vm/<vm>/forecast`` (retained): the claim with its range, and the inputs it
    rests on with theirs (no dirty rate nor first pass where the forecast does not
    apply); ``notes`` are the forecaster's (bandwidth, bound, first pass)."""
    f, o, claimed = c.forecast, c.outlook, c.verdict not in ("not-applicable", "blocked")
    said = [*f.notes, *(notes if claimed else ())]
    if dirty is not None and claimed:
        said.append(f"dirty rate: {dirty.basis}")
    dirty_low, dirty_high = _ends(o.dirty, inputs.dirty_bytes_per_s, claimed)
    bw_low, bw_high = _ends(o.bandwidth, inputs.bandwidth_bytes_per_s, True)
    first = content.bytes if content is not None and claimed else None
    model = schema.ForecastPayload(
        **stamp.common(), verdict=c.verdict, applicable=c.applicable, reason=c.reason,
        blockers=list(c.blockers), converges=c.converges, eta_s=f.eta_s,
        eta_s_low=o.eta_s_low, eta_s_high=o.eta_s_high, downtime_ms=f.downtime_ms,
        downtime_ms_low=o.downtime_ms_low, downtime_ms_high=o.downtime_ms_high,
        passes=f.passes, bandwidth_bytes_per_s=inputs.bandwidth_bytes_per_s,
        bandwidth_bytes_per_s_low=bw_low, bandwidth_bytes_per_s_high=bw_high,
        bandwidth_source=bandwidth_source,
        dirty_bytes_per_s=inputs.dirty_bytes_per_s if claimed else None,
        dirty_bytes_per_s_low=dirty_low, dirty_bytes_per_s_high=dirty_high,
        dirty_error_bound_rel=dirty.error_bound_rel if dirty and claimed else None,
        dirty_source=dirty.source if dirty and claimed else None,
        downtime_limit_ms=inputs.downtime_limit_ms,
        remaining_bytes=inputs.remaining_bytes if claimed else None,
        first_pass_content_bytes=first.central if first else None,
        first_pass_content_bytes_low=first.low if first else None,
        first_pass_content_bytes_high=first.high if first else None,
        first_pass_source=content.source if content is not None and claimed else None,
        vfio_bytes=inputs.vfio_bytes, recommendations=recommendations(c.advice, applied),
        model=MODEL, notes=said,
    )
    return vm_message(stamp, TopicKind.FORECAST, model)
