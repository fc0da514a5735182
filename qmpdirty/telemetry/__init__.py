"""Telemetry: MQTT topics, payload models, and rendering facts and decisions into the
messages the sinks consume (``message``); pure core."""
