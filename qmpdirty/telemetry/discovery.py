"""Home Assistant MQTT discovery: one HA device per VM, built from the contract (pure core).

Stage: telemetry. ``discovery_messages`` returns the retained QoS 1 config messages
that make Home Assistant show a VM as a device with nine entities, hanging from its host's
device (``via_device``) and carrying its QEMU version and machine; ``host_messages`` the
host's device with its own two entities; ``clear_messages`` returns the empty retained
payloads that remove a VM's entities when the VM is gone. Every
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
from typing import Literal, NotRequired, TypedDict

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


class EntityOptions(TypedDict, total=False):
    """The keys an entity adds to its config: HA's own names, so mypy checks each one."""

    unit_of_measurement: str
    device_class: str
    state_class: str
    icon: str
    payload_on: str
    payload_off: str
    json_attributes_template: str
    options: list[str]


class HaAvailability(TypedDict):
    """One availability topic and the payloads that mean up and down."""

    topic: str
    payload_available: str
    payload_not_available: str


class HaDevice(TypedDict):
    """The HA device an entity belongs to (a VM's, or its host's)."""

    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    via_device: NotRequired[str]
    sw_version: NotRequired[str]
    hw_version: NotRequired[str]


class HaOrigin(TypedDict):
    """Who published the discovery config (HA shows it in the device's page)."""

    name: str
    sw_version: str


class Placement(TypedDict, total=False):
    """Where an entity reads its attributes and availability, and when its value expires."""

    json_attributes_topic: str
    availability: list[HaAvailability]
    expire_after: int


class DiscoveryConfig(EntityOptions, Placement):
    """One retained discovery payload: what HA reads to build one entity."""

    name: str
    unique_id: str
    state_topic: str
    value_template: str
    availability_mode: Literal["all"]
    qos: int
    device: HaDevice
    origin: HaOrigin


@dataclass(frozen=True, slots=True)
class Entity:
    """One HA entity: which payload it reads and how."""

    key: str
    component: str  # "sensor" or "binary_sensor"
    name: str
    kind: TopicKind
    value_template: str
    options: EntityOptions = field(default_factory=EntityOptions)
    #: available while the host is (a VM's status must show ``offline`` too)
    host_only: bool = False


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
    Entity("status", "sensor", "Status", TopicKind.VM_STATUS, "{{ value }}",
           {"device_class": "enum", "options": ["online", "offline", "unresponsive", "error"],
            "icon": "mdi:lan-connect"}, host_only=True),
    Entity("vfio_tracking", "sensor", "VFIO tracking mode", TopicKind.TRACKING,
           "{{ value_json.devices | map(attribute='mode') | unique | sort | join(', ') "
           "if value_json.devices else 'no VFIO device' }}",
           {"icon": "mdi:expansion-card",
            "json_attributes_template": "{{ {'devices': value_json.devices | map(attribute="
            "'qom_path') | list, 'modes': value_json.devices | map(attribute='mode') | list, "
            "'complete': value_json.complete} | tojson }}"}),
)

#: The host's own entities, on its device (what every VM device hangs from).
HOST_ENTITIES: tuple[Entity, ...] = (
    Entity("daemon", "binary_sensor", "qmpdirty", TopicKind.HOST_STATUS, "{{ value }}",
           {"payload_on": "online", "payload_off": "offline", "device_class": "connectivity"}),
    Entity("sessions", "sensor", "QMP sessions", TopicKind.DAEMON,
           "{{ value_json.vms_online }}",
           {"state_class": "measurement", "icon": "mdi:server-network",
            "json_attributes_template": "{{ {'vms_known': value_json.vms_known, "
            "'version': value_json.version} | tojson }}"}),
)


@dataclass(frozen=True, slots=True)
class VmDevice:
    """What the VM's device says besides its name, and how long a dirty rate holds."""

    qemu_version: str | None = None
    machine: str | None = None
    #: HA shows the dirty rate as unavailable when no new one came for this long
    dirty_rate_expire_s: int | None = None


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


def availability(topics: Topics, vm: str) -> list[HaAvailability]:
    """The host's status (birth/last will) and the VM's status (QMP session)."""
    return [
        HaAvailability(topic=topic, payload_available="online",
                       payload_not_available="offline")
        for topic in (topics.host_topic(TopicKind.HOST_STATUS),
                      topics.vm_topic(vm, TopicKind.VM_STATUS))
    ]


def host_device_id(topics: Topics) -> str:
    """``qmpdirty_<host>``: the HA device of the host (its daemon)."""
    return f"qmpdirty_{ha_id(topics.host)}"


def vm_device(topics: Topics, vm: str, device: VmDevice) -> HaDevice:
    """The HA device of one VM: under its host's, with QEMU's version and machine."""
    out = HaDevice(identifiers=[device_id(topics, vm)], name=f"{vm} on {topics.host}",
                   manufacturer="qmpdirty", model="QEMU VM",
                   via_device=host_device_id(topics))
    if device.qemu_version is not None:
        out["sw_version"] = f"QEMU {device.qemu_version}"
    if device.machine is not None:
        out["hw_version"] = device.machine
    return out


def entity_config(topics: Topics, vm: str, entity: Entity,
                  device: VmDevice = VmDevice()) -> DiscoveryConfig:
    """The discovery payload of one entity of ``vm``."""
    placement = Placement(availability=availability(topics, vm)[:1 if entity.host_only else 2])
    if entity.kind is TopicKind.DIRTY_RATE and device.dirty_rate_expire_s is not None:
        placement["expire_after"] = device.dirty_rate_expire_s
    return _config(f"{device_id(topics, vm)}_{entity.key}", topics.vm_topic(vm, entity.kind),
                   entity, vm_device(topics, vm, device), placement)


def _config(unique_id: str, state_topic: str, entity: Entity, device: HaDevice,
            placement: Placement) -> DiscoveryConfig:
    if "json_attributes_template" in entity.options:
        placement = {**placement, "json_attributes_topic": state_topic}
    return {
        **entity.options,
        **placement,
        "name": entity.name,
        "unique_id": unique_id,
        "state_topic": state_topic,
        "value_template": entity.value_template,
        "availability_mode": "all",
        "qos": entity.kind.qos,
        "device": device,
        "origin": HaOrigin(name="qmpdirty", sw_version=__version__),
    }


def discovery_topic(topics: Topics, vm: str, entity: Entity, prefix: str) -> str:
    """``<prefix>/<component>/qmpdirty_<host>/<vm>_<key>/config``."""
    levels = "/".join(sanitise(p) for p in prefix.split("/") if p) or DEFAULT_PREFIX
    return (f"{levels}/{entity.component}/qmpdirty_{ha_id(topics.host)}/"
            f"{ha_id(vm)}_{entity.key}/config")


def discovery_messages(topics: Topics, vm: str, prefix: str = DEFAULT_PREFIX,
                       device: VmDevice = VmDevice()) -> list[Outgoing]:
    """Retained QoS 1 config messages for every entity of ``vm`` (a sanitised name)."""
    return [
        Outgoing(discovery_topic(topics, vm, entity, prefix),
                 json.dumps(entity_config(topics, vm, entity, device), sort_keys=True).encode(),
                 qos=1, retain=True, vm=vm)
        for entity in ENTITIES
    ]


def host_messages(topics: Topics, prefix: str = DEFAULT_PREFIX) -> list[Outgoing]:
    """Retained QoS 1 config messages of the host's device and its entities: the daemon
    (connectivity, from the host's status and last will) and its QMP sessions."""
    host = host_device_id(topics)
    device = HaDevice(identifiers=[host], name=f"qmpdirty on {topics.host}",
                      manufacturer="qmpdirty", model="KVM host", sw_version=__version__)
    levels = "/".join(sanitise(p) for p in prefix.split("/") if p) or DEFAULT_PREFIX
    out = []
    for entity in HOST_ENTITIES:
        placement = (Placement() if entity.kind is TopicKind.HOST_STATUS
                     else Placement(availability=availability(topics, "")[:1]))
        config = _config(f"{host}_{entity.key}", topics.host_topic(entity.kind), entity,
                         device, placement)
        out.append(Outgoing(f"{levels}/{entity.component}/{host}/{entity.key}/config",
                            json.dumps(config, sort_keys=True).encode(), qos=1, retain=True))
    return out


def clear_messages(topics: Topics, vm: str, prefix: str = DEFAULT_PREFIX) -> list[Outgoing]:
    """Empty retained payloads: HA removes the entities (and the device) of ``vm``."""
    return [Outgoing(discovery_topic(topics, vm, entity, prefix), b"", qos=1, retain=True,
                     is_json=False, vm=vm)
            for entity in ENTITIES]
