"""Telemetry: MQTT topics, payload models and rendering facts into messages (pure core)."""
