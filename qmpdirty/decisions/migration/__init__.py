"""Migration intelligence (pure).

``tracker`` (the migration state machine), ``errors`` (causes of failures),
``dirtyrate`` (when and how to measure), ``estimate`` and ``forecast`` (will it
converge, when, with what downtime), ``forecaster`` (the per-VM state behind the
forecasts), ``policy`` (what the daemon may change by itself) and ``hooks_due`` (when
a migration hook fires). Time is always an argument.
"""
