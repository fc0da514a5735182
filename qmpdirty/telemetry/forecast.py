"""The old home of the forecast renderers (pure core).

Stage: telemetry. They live in ``telemetry.render.forecast`` now; this module only
keeps ``telemetry.forecast.forecast`` / ``.summary`` / ``.recommendations`` importable
for the callers not yet moved.
"""

from qmpdirty.telemetry.render.forecast import forecast, recommendations, summary

__all__ = ["forecast", "recommendations", "summary"]
