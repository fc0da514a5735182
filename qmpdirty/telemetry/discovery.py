"""Home Assistant MQTT discovery: one HA device per VM, built from the contract (pure core).

Stage: telemetry. ``discovery_messages`` returns the retained QoS 1 config messages
that make Home Assistant show a VM as a device with seven entities; ``clear_messages``
returns the empty retained payloads that remove them when the VM is gone. Every
``state_topic`` and availability topic is built with ``Topics`` and ``TopicKind``,
and every ``value_json.<field>`` a template reads is a field of that topic's payload
model (tested). Availability is the host's last will AND the VM's QMP session.
"Migratable" and "Migration would converge" never disagree: the latter reads the
forecast's ``verdict``, which is ``blocked`` (OFF) whenever the VM is not migratable
and ``not-applicable`` (unknown) when its role has no forecast; ``uncertain`` (it
converges at one end of its inputs' ranges only) is unknown too, never ON. A cleared topic (the
empty retained message of a ``dirty_rate`` that no longer applies) shows as unknown.

This module must not do I/O, keep state, or name a topic that qmpdirty does not
publish. The shell decides when to send (``[homeassistant] enabled``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from qmpdirty import __version__
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.topics import TopicKind, Topics, sanitise

DEFAULT_PREFIX = "homeassistant"
_NOT_HA_SAFE = re.compile(r"[^A-Za-z0-9_-]")
#: Jinja renders ``None`` for "no value": HA's MQTT sensors then show "unknown".
_PROGRESS = (
    "{% set t = value_json.transferred_bytes %}{% set r = value_json.remaining_bytes %}"
    "{{ (100 * t / (t + r)) | round(1) if t is number and r is number and t + r > 0 "
    "else 'None' }}"
)


@dataclass(frozen=True, slots=True)
class Entity:
    """One HA entity: which payload it reads and how."""

    key: str
    component: str  # "sensor" or "binary_sensor"
    name: str
    kind: TopicKind
    value_template: str
    options: dict[str, object] = field(default_factory=dict)


#: verdict -> binary state: only ``converges`` is ON; blocked is OFF, like "Migratable"
_CONVERGES = (
    "{% set v = value_json.verdict %}{{ 'ON' if v == 'converges' else "
    "('OFF' if v in ['does-not-converge', 'blocked'] else 'None') }}"
)

ENTITIES: tuple[Entity, ...] = (
    Entity("dirty_rate", "sensor", "Dirty rate", TopicKind.DIRTY_RATE,
           "{{ (value_json.bytes_per_s / 1048576) | round(2) if value_json is defined "
           "else 'None' }}",
           {"unit_of_measurement": "MiB/s", "device_class": "data_rate",
            "state_class": "measurement", "icon": "mdi:memory"}),
    Entity("migratable", "binary_sensor", "Migratable", TopicKind.BLOCKERS,
           "{{ 'ON' if value_json.migratable else 'OFF' }}",
           {"payload_on": "ON", "payload_off": "OFF", "icon": "mdi:truck-fast",
            "json_attributes_template": "{{ {'observed': value_json.observed, 'predicted': "
            "value_json.predicted | map(attribute='text') | list} | tojson }}"}),
    Entity("migration_status", "sensor", "Migration status", TopicKind.MIGRATION,
           "{{ value_json.status }}", {"icon": "mdi:transfer"}),
    Entity("migration_progress", "sensor", "Migration progress", TopicKind.MIGRATION,
           _PROGRESS, {"unit_of_measurement": "%", "state_class": "measurement",
                       "icon": "mdi:progress-upload"}),
    Entity("forecast_converges", "binary_sensor", "Migration would converge",
           TopicKind.FORECAST, _CONVERGES,
           {"payload_on": "ON", "payload_off": "OFF", "icon": "mdi:chart-bell-curve",
            "json_attributes_template": "{{ {'verdict': value_json.verdict, 'reason': "
            "value_json.reason, 'downtime_ms': value_json.downtime_ms, "
            "'eta_s_low': value_json.eta_s_low, 'eta_s_high': value_json.eta_s_high, "
            "'passes': value_json.passes, 'recommendations': value_json.recommendations "
            "| map(attribute='action') | list} | tojson }}"}),
    Entity("forecast_eta", "sensor", "Migration ETA", TopicKind.FORECAST,
           "{{ value_json.eta_s | round(0) if value_json.eta_s is number else 'None' }}",
           {"unit_of_measurement": "s", "device_class": "duration",
            "state_class": "measurement", "icon": "mdi:timer-sand"}),
    Entity("role", "sensor", "Role", TopicKind.INFO, "{{ value_json.role }}",
           {"icon": "mdi:state-machine",
            "json_attributes_template": "{{ {'reason': value_json.role_reason, "
            "'run_state': value_json.run_state} | tojson }}"}),
)


def ha_id(name: str) -> str:
    """A name usable in HA ids and discovery topics (``[A-Za-z0-9_-]``); a name that
    had to change keeps a hash suffix, so ``a.b`` and ``a_b`` stay distinct."""
    safe = _NOT_HA_SAFE.sub("_", name)
    if safe == name:
        return name
    return f"{safe}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def device_id(topics: Topics, vm: str) -> str:
    """``qmpdirty_<host>_<vm>``: the HA device identifier of one VM on one host."""
    return f"qmpdirty_{ha_id(topics.host)}_{ha_id(vm)}"


def availability(topics: Topics, vm: str) -> list[dict[str, str]]:
    """The host's status (birth/last will) and the VM's status (QMP session)."""
    return [
        {"topic": topic, "payload_available": "online", "payload_not_available": "offline"}
        for topic in (topics.host_topic(TopicKind.HOST_STATUS),
                      topics.vm_topic(vm, TopicKind.VM_STATUS))
    ]


def entity_config(topics: Topics, vm: str, entity: Entity) -> dict[str, object]:
    """The discovery payload of one entity."""
    state_topic = topics.vm_topic(vm, entity.kind)
    config: dict[str, object] = {
        "name": entity.name,
        "unique_id": f"{device_id(topics, vm)}_{entity.key}",
        "state_topic": state_topic,
        "value_template": entity.value_template,
        "availability": availability(topics, vm),
        "availability_mode": "all",
        "qos": entity.kind.qos,
        "device": {"identifiers": [device_id(topics, vm)], "name": f"{vm} on {topics.host}",
                   "manufacturer": "qmpdirty", "model": "QEMU VM"},
        "origin": {"name": "qmpdirty", "sw_version": __version__},
        **entity.options,
    }
    if "json_attributes_template" in entity.options:
        config["json_attributes_topic"] = state_topic
    return config


def discovery_topic(topics: Topics, vm: str, entity: Entity, prefix: str) -> str:
    """``<prefix>/<component>/qmpdirty_<host>/<vm>_<key>/config``."""
    levels = "/".join(sanitise(p) for p in prefix.split("/") if p) or DEFAULT_PREFIX
    return (f"{levels}/{entity.component}/qmpdirty_{ha_id(topics.host)}/"
            f"{ha_id(vm)}_{entity.key}/config")


def discovery_messages(topics: Topics, vm: str, prefix: str = DEFAULT_PREFIX) -> list[Outgoing]:
    """Retained QoS 1 config messages for every entity of ``vm`` (a sanitised name)."""
    return [
        Outgoing(discovery_topic(topics, vm, entity, prefix),
                 json.dumps(entity_config(topics, vm, entity), sort_keys=True).encode(),
                 qos=1, retain=True, vm=vm)
        for entity in ENTITIES
    ]


def clear_messages(topics: Topics, vm: str, prefix: str = DEFAULT_PREFIX) -> list[Outgoing]:
    """Empty retained payloads: HA removes the entities (and the device) of ``vm``."""
    return [Outgoing(discovery_topic(topics, vm, entity, prefix), b"", qos=1, retain=True,
                     is_json=False, vm=vm)
            for entity in ENTITIES]
