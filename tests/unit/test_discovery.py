"""Home Assistant discovery: HA's required keys, valid JSON, and only topics (and payload
fields) that qmpdirty really publishes — the set is built from TopicKind and Topics."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from qmpdirty.telemetry import schema
from qmpdirty.telemetry.discovery import (
    ENTITIES,
    VmDevice,
    clear_messages,
    device_id,
    discovery_messages,
    ha_id,
    host_messages,
)
from qmpdirty.telemetry.topics import TopicKind, Topics

TOPICS = Topics.create("qmpdirty", "kvm-07")
VM = "web1"
REQUIRED = {"name", "unique_id", "state_topic", "value_template", "availability",
            "availability_mode", "device", "origin"}
HA_ID = re.compile(r"[A-Za-z0-9_-]+")


def published(topics: Topics, vm: str) -> dict[str, TopicKind]:
    """Every topic qmpdirty publishes for ``vm``, from the contract's own definitions."""
    out = {topics.host_topic(k): k for k in TopicKind if k.scope == "host"}
    out.update({topics.vm_topic(vm, k): k for k in TopicKind
                if k.scope == "vm" and k is not TopicKind.EVENT})
    return out


def configs(topics: Topics = TOPICS, vm: str = VM, prefix: str = "homeassistant",
            device: VmDevice | None = None) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for msg in discovery_messages(topics, vm, prefix, device or VmDevice()):
        assert msg.retain and msg.qos == 1 and msg.is_json
        out.append((msg.topic, json.loads(msg.payload)))
    return out


def test_one_message_per_entity_with_the_required_keys() -> None:
    found = configs()
    assert len(found) == len(ENTITIES) == 9
    for topic, cfg in found:
        assert cfg.keys() >= REQUIRED, topic
        assert cfg["availability_mode"] == "all"
        component = topic.split("/")[1]
        assert component in ("sensor", "binary_sensor")
        if component == "binary_sensor":
            assert (cfg["payload_on"], cfg["payload_off"]) == ("ON", "OFF")


def test_discovery_topics_follow_ha_layout() -> None:
    for topic, cfg in configs():
        prefix, _component, node, object_id, last = topic.split("/")
        assert (prefix, last) == ("homeassistant", "config")
        assert node == "qmpdirty_kvm-07"
        assert HA_ID.fullmatch(node) and HA_ID.fullmatch(object_id)
        assert object_id.startswith(f"{VM}_")
        assert cfg["unique_id"] == f"qmpdirty_kvm-07_{object_id}"


def test_one_device_per_vm() -> None:
    devices = {json.dumps(cfg["device"], sort_keys=True) for _, cfg in configs()}
    assert len(devices) == 1
    device = json.loads(devices.pop())
    assert device == {"identifiers": ["qmpdirty_kvm-07_web1"], "name": "web1 on kvm-07",
                      "manufacturer": "qmpdirty", "model": "QEMU VM",
                      "via_device": "qmpdirty_kvm-07"}


def test_the_vm_device_shows_qemu_and_machine_and_hangs_from_the_host_device() -> None:
    found = configs(device=VmDevice("10.0.2", "pc-q35-10.0", 90))
    for _, cfg in found:
        assert cfg["device"]["sw_version"] == "QEMU 10.0.2"
        assert cfg["device"]["hw_version"] == "pc-q35-10.0"
    expiring = {cfg["unique_id"]: cfg["expire_after"] for _, cfg in found
                if "expire_after" in cfg}
    assert expiring == {"qmpdirty_kvm-07_web1_dirty_rate": 90}
    hosts = [json.loads(m.payload) for m in host_messages(TOPICS)]
    assert {h["device"]["identifiers"][0] for h in hosts} == {"qmpdirty_kvm-07"}
    published_topics = published(TOPICS, VM)
    daemon_fields = set(schema.DaemonPayload.model_fields)
    for h in hosts:
        assert published_topics[h["state_topic"]].scope == "host"
        templates = h["value_template"] + h.get("json_attributes_template", "")
        assert set(re.findall(r"value_json\.(\w+)", templates)) <= daemon_fields
    # the daemon's own entity reads the last will: never unavailable, off when it dies
    [daemon] = [h for h in hosts if h["state_topic"] == TOPICS.host_topic(TopicKind.HOST_STATUS)]
    assert "availability" not in daemon and daemon["payload_off"] == "offline"


def test_status_and_vfio_tracking_entities() -> None:
    by_key = {cfg["unique_id"].rsplit("web1_", 1)[1]: cfg for _, cfg in configs()}
    status = by_key["status"]
    assert status["state_topic"] == TOPICS.vm_topic(VM, TopicKind.VM_STATUS)
    assert status["options"] == ["online", "offline", "unresponsive", "error"]
    # it must show "offline": only the host's status makes it unavailable
    assert [a["topic"] for a in status["availability"]] == [
        TOPICS.host_topic(TopicKind.HOST_STATUS)]
    tracking = by_key["vfio_tracking"]
    assert tracking["state_topic"] == TOPICS.vm_topic(VM, TopicKind.TRACKING)
    assert "map(attribute='mode')" in tracking["value_template"]


def test_every_topic_read_is_one_qmpdirty_publishes() -> None:
    topics = published(TOPICS, VM)
    for _, cfg in configs():
        assert cfg["state_topic"] in topics
        assert topics[cfg["state_topic"]].retain, "HA needs retained state at start-up"
        if "json_attributes_topic" in cfg:
            assert cfg["json_attributes_topic"] in topics
        availability = [a["topic"] for a in cfg["availability"]]
        both = [TOPICS.host_topic(TopicKind.HOST_STATUS), TOPICS.vm_topic(VM, TopicKind.VM_STATUS)]
        assert availability == (both[:1] if cfg["state_topic"] == both[1] else both)
        for item in cfg["availability"]:
            assert (item["payload_available"], item["payload_not_available"]) == \
                ("online", "offline")


def test_templates_read_fields_the_payloads_have() -> None:
    topics = published(TOPICS, VM)
    for _, cfg in configs():
        kind = topics[cfg["state_topic"]]
        if kind is TopicKind.VM_STATUS:  # plain text
            assert cfg["value_template"] == "{{ value }}"
            continue
        model = schema.PAYLOADS[kind.suffix.replace("/", ".")]
        fields = {f.alias or name for name, f in model.model_fields.items()}
        templates = cfg["value_template"] + cfg.get("json_attributes_template", "")
        used = set(re.findall(r"value_json\.(\w+)", templates))
        assert used, cfg["name"]
        assert used <= fields, (cfg["name"], used - fields)


def test_units_and_classes() -> None:
    by_key = {cfg["unique_id"].rsplit("web1_", 1)[1]: cfg for _, cfg in configs()}
    assert by_key["dirty_rate"]["unit_of_measurement"] == "MiB/s"
    assert "1048576" in by_key["dirty_rate"]["value_template"]
    assert by_key["migration_progress"]["unit_of_measurement"] == "%"
    assert "transferred_bytes" in by_key["migration_progress"]["value_template"]
    assert by_key["forecast_eta"]["unit_of_measurement"] == "s"
    assert by_key["forecast_eta"]["device_class"] == "duration"


def test_would_converge_reads_the_verdict_so_it_never_contradicts_migratable() -> None:
    """A blocked VM's forecast says ``blocked`` (OFF, like "Migratable"); a VM whose role
    has no forecast says ``not-applicable`` (unknown); only ``converges`` is ON."""
    by_key = {cfg["unique_id"].rsplit("web1_", 1)[1]: cfg for _, cfg in configs()}
    template = by_key["forecast_converges"]["value_template"]
    assert "value_json.converges" not in template
    assert "'ON' if v == 'converges'" in template
    assert "'OFF' if v in ['does-not-converge', 'blocked']" in template
    verdicts = schema.ForecastPayload.model_json_schema()["properties"]["verdict"]["enum"]
    assert set(verdicts) == {"converges", "does-not-converge", "uncertain", "blocked",
                             "not-applicable", "unknown"}
    # the expression inside {{ }} is Python too: every verdict's state, uncertain unknown
    expression = template.split("{{", 1)[1].rsplit("}}", 1)[0]
    states = {v: eval(expression, {}, {"v": v}) for v in verdicts}
    assert states == {"converges": "ON", "does-not-converge": "OFF", "blocked": "OFF",
                      "uncertain": "None", "not-applicable": "None", "unknown": "None"}


def test_role_entity_and_a_cleared_dirty_rate() -> None:
    by_key = {cfg["unique_id"].rsplit("web1_", 1)[1]: cfg for _, cfg in configs()}
    assert by_key["role"]["state_topic"] == TOPICS.vm_topic(VM, TopicKind.INFO)
    assert by_key["role"]["value_template"] == "{{ value_json.role }}"
    # an empty retained message (the guest stopped running) is not JSON: unknown
    assert "if value_json is defined else 'None'" in by_key["dirty_rate"]["value_template"]


def test_unique_ids_stay_unique_across_vms_and_hosts() -> None:
    ids: set[str] = set()
    for topics, vm in [(TOPICS, "a.b"), (TOPICS, "a_b"), (TOPICS, "a-b"),
                       (Topics.create("qmpdirty", "kvm-08"), "a.b")]:
        for topic, cfg in configs(topics, vm):
            assert HA_ID.fullmatch(topic.split("/")[3])
            assert cfg["unique_id"] not in ids
            ids.add(cfg["unique_id"])
    assert len(ids) == 4 * len(ENTITIES)


@pytest.mark.parametrize(("name", "expected"), [("web1", "web1"), ("a-b_c", "a-b_c")])
def test_ha_id_keeps_safe_names(name: str, expected: str) -> None:
    assert ha_id(name) == expected


def test_ha_id_hashes_changed_names() -> None:
    assert ha_id("a.b").startswith("a_b_") and ha_id("a.b") != ha_id("a_b")
    assert device_id(Topics.create("q", "h.x"), "v") == f"qmpdirty_{ha_id('h.x')}_v"


def test_custom_discovery_prefix_is_sanitised() -> None:
    for topic, _ in configs(prefix="ha/disc overy/"):
        assert topic.startswith("ha/disc_overy/")


def test_clear_removes_exactly_what_was_announced() -> None:
    announced = [m.topic for m in discovery_messages(TOPICS, VM)]
    cleared = clear_messages(TOPICS, VM)
    assert [m.topic for m in cleared] == announced
    for msg in cleared:
        assert msg.payload == b"" and msg.retain and msg.qos == 1 and not msg.is_json
