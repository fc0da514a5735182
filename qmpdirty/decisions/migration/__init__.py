"""Migration intelligence (pure).

``tracker`` (the migration state machine), ``errors`` (causes of failures),
``dirtyrate`` (when and how to measure), ``estimate`` and ``forecast`` (will it
converge, when, with what downtime), ``forecaster`` (the per-VM state behind the
forecasts), ``policy`` (what the daemon may change by itself), ``hooks_due`` (when
a hook fires: a forecast turned negative, the ``qmp:NAME`` hooks a QMP event runs) and
``republish`` (whether ``migration``, its dirty rate and ``info`` go out again),
``residency`` (which of a QEMU's mappings are guest RAM, what the host backs of it).
Time is always an argument.
"""
