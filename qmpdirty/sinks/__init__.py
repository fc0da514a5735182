"""Sinks: where telemetry goes (shell). ``mqtt`` publishes through the client that
``client`` builds, ``retained`` reads retained state back (for ``admit``), ``hooks``
runs the operator's executables, ``prometheus`` serves ``/metrics``; ``outbox`` is a data
structure without I/O."""
