"""Migration intelligence (pure).

``tracker`` (the migration state machine), ``errors`` (causes of failures),
``dirtyrate`` (when and how to measure), ``estimate`` and ``forecast`` (will it
converge, when, with what downtime) and ``forecaster`` (the per-VM state behind the
forecasts). Time is always an argument.
"""
