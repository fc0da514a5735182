"""qmpdirty: watches every QEMU on a KVM host over QMP and publishes, over MQTT,
whether each VM can live-migrate, how its VFIO devices' dirty pages are tracked,
how fast the guest dirties memory and how a migration is going.

Layout (data flows one way): ``qmp`` -> ``facts`` -> ``decisions`` -> ``telemetry``
-> ``sinks``; ``daemon`` wires the pipeline, ``cli`` is the entry point.
"""

__version__ = "0.1.0"
