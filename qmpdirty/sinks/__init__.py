"""Sinks: where telemetry goes (MQTT). Shell modules, except the outbox structure."""
