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
from qmpdirty.decisions.migration.forecast import MODEL, Advice, Forecast, ForecastInputs
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.topics import TopicKind


def summary(f: Forecast, passes_done: int) -> schema.ForecastSummary:
    """The forecast inside ``migration``: ``passes`` is the total at switchover (the
    ``passes_done`` before the one under way, plus the model's remaining ones)."""
    total = None if f.passes is None else passes_done + f.passes
    return schema.ForecastSummary(converges=f.converges, eta_s=f.eta_s,
                                  downtime_ms=f.downtime_ms, passes=total,
                                  passes_remaining=f.passes)


def recommendations(advice: tuple[Advice, ...], applied: Collection[str] = ()
                    ) -> list[schema.Recommendation]:
    return [schema.Recommendation(action=a.action, value=a.value, reason=a.reason,
                                  applicable=a.applicable, applied=a.action in applied)
            for a in advice]


def forecast(stamp: VmStamp, inputs: ForecastInputs, c: ForecastClaim, *,
             bandwidth_source: str, dirty: DirtyEstimate | None,
             applied: Collection[str] = ()) -> Outgoing:
    """``vm/<vm>/forecast`` (retained): the claim, and the inputs it rests on (no dirty
    rate nor first pass where the forecast does not apply)."""
    f, claimed = c.forecast, c.verdict not in ("not-applicable", "blocked")
    notes = [*f.notes]
    if dirty is not None and claimed:
        notes.append(f"dirty rate: {dirty.basis}")
    model = schema.ForecastPayload(
        **stamp.common(), verdict=c.verdict, applicable=c.applicable, reason=c.reason,
        blockers=list(c.blockers), converges=f.converges, eta_s=f.eta_s,
        downtime_ms=f.downtime_ms, passes=f.passes,
        bandwidth_bytes_per_s=inputs.bandwidth_bytes_per_s,
        bandwidth_source=bandwidth_source,
        dirty_bytes_per_s=inputs.dirty_bytes_per_s if claimed else None,
        dirty_source=dirty.source if dirty and claimed else None,
        downtime_limit_ms=inputs.downtime_limit_ms,
        remaining_bytes=inputs.remaining_bytes if claimed else None,
        vfio_bytes=inputs.vfio_bytes, recommendations=recommendations(c.advice, applied),
        model=MODEL, notes=notes,
    )
    return vm_message(stamp, TopicKind.FORECAST, model)
