"""contrib/: the Telegraf config reads only topics and payload fields qmpdirty publishes,
and the Grafana dashboard queries only measurements, fields and tags that config stores.

Topics come from ``TopicKind``/``Topics`` and fields from the payload models in
``qmpdirty/telemetry/schema.py``: nothing about the contract is hard-coded here.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from qmpdirty.telemetry import schema
from qmpdirty.telemetry.topics import TopicKind, Topics

ROOT = Path(__file__).resolve().parents[2]
TELEGRAF = ROOT / "contrib" / "telegraf" / "qmpdirty.conf"
GRAFANA = ROOT / "contrib" / "grafana" / "qmpdirty.json"
TOPICS = Topics.create("qmpdirty", "kvm-07")
VM = "web1"
JSON_V2_TYPES = {"int", "uint", "float", "string", "bool"}


def published() -> dict[str, TopicKind]:
    """Every topic qmpdirty publishes on one host for one VM (one example event)."""
    out = {TOPICS.host_topic(k): k for k in TopicKind if k.scope == "host"}
    out.update({TOPICS.vm_topic(VM, k, "MIGRATION" if k is TopicKind.EVENT else None): k
                for k in TopicKind if k.scope == "vm"})
    return out


def matches(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    if f[-1] == "#":
        head = f[:-1]
        return len(t) >= len(head) and all(a in ("+", b) for a, b in zip(head, t, strict=False))
    return len(f) == len(t) and all(a in ("+", b) for a, b in zip(f, t, strict=True))


def model_of(kind: TopicKind) -> type[schema.Payload]:
    return schema.PAYLOADS[kind.suffix.replace("/", ".")]


def wire_fields(model: type[BaseModel]) -> dict[str, Any]:
    """Field name as consumers see it (alias) -> FieldInfo."""
    return {f.alias or name: f for name, f in model.model_fields.items()}


def nullable(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation) or annotation is types.NoneType


@dataclass
class Measurement:
    name: str
    model: type[schema.Payload]
    fields: dict[str, str] = field(default_factory=dict)  # stored name -> payload path
    tags: set[str] = field(default_factory=set)


def telegraf() -> dict[str, Any]:
    with TELEGRAF.open("rb") as f:
        return tomllib.load(f)


def consumers() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = telegraf()["inputs"]["mqtt_consumer"]
    return found


def kind_of(consumer: dict[str, Any]) -> TopicKind:
    topics = published()
    kinds = {topics[t] for f in consumer["topics"] for t in topics if matches(f, t)}
    assert len(kinds) == 1, (consumer["topics"], kinds)
    return kinds.pop()


def measurements() -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    for consumer in consumers():
        model = model_of(kind_of(consumer))
        for parsed in consumer.get("topic_parsing", []):
            tags = {t for t in parsed["tags"].split("/") if t != "_"}
        for spec in consumer["json_v2"]:
            m = out.setdefault(spec["measurement_name"],
                               Measurement(spec["measurement_name"], model, tags=set(tags)))
            m.tags |= {t.get("rename", t["path"]) for t in spec.get("tag", [])}
            m.fields |= {f.get("rename", f["path"]): f["path"] for f in spec.get("field", [])}
    return out


# --- Telegraf --------------------------------------------------------------------------------


def test_telegraf_parses_and_outputs_to_influxdb() -> None:
    config = telegraf()
    assert config["agent"]["omit_hostname"] is True  # `host` is the KVM host, from the topic
    assert config["outputs"]["influxdb"][0]["database"] == "qmpdirty"
    assert len(consumers()) >= 5


@pytest.mark.parametrize("consumer", consumers(), ids=lambda c: c["topics"][0])
def test_every_topic_filter_matches_what_qmpdirty_publishes(consumer: dict[str, Any]) -> None:
    topics = published()
    for topic_filter in consumer["topics"]:
        assert any(matches(topic_filter, t) for t in topics), topic_filter
    assert consumer["qos"] == 1 and consumer["persistent_session"] is True
    assert consumer["client_id"] and consumer["data_format"] == "json_v2"
    kind_of(consumer)


@pytest.mark.parametrize("consumer", consumers(), ids=lambda c: c["topics"][0])
def test_topic_parsing_tags_host_and_vm(consumer: dict[str, Any]) -> None:
    [parsed] = consumer["topic_parsing"]
    assert parsed["topic"] in consumer["topics"]
    levels, tags = parsed["topic"].split("/"), parsed["tags"].split("/")
    assert len(levels) == len(tags)
    example = TOPICS.vm_topic(VM, kind_of(consumer))
    assert matches(parsed["topic"], example)
    values = dict(zip(tags, example.split("/"), strict=True))
    assert (values["host"], values["vm"]) == (TOPICS.host, VM)


@pytest.mark.parametrize("consumer", consumers(), ids=lambda c: c["topics"][0])
def test_json_v2_paths_are_payload_fields(consumer: dict[str, Any]) -> None:
    fields = wire_fields(model_of(kind_of(consumer)))
    for spec in consumer["json_v2"]:
        assert spec["timestamp_path"] in fields and spec["timestamp_format"] == "unix"
        for item in spec.get("field", []) + spec.get("tag", []):
            root = item["path"].split(".")[0]
            assert root in fields, (spec["measurement_name"], item["path"])
            if "type" in item:
                assert item["type"] in JSON_V2_TYPES
            if item["path"] == root and nullable(fields[root].annotation):
                assert item.get("optional") is True, f"{item['path']} can be null"


def test_measurement_names_are_unique() -> None:
    names = [spec["measurement_name"] for c in consumers() for spec in c["json_v2"]]
    assert len(names) == len(set(names))


# --- Grafana ---------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GRAFANA.read_text())
    return loaded


def queries() -> list[str]:
    return [t["query"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_parses_and_declares_its_datasource() -> None:
    board = dashboard()
    # a datasource variable, not an ``__inputs`` entry: provisioning from a file needs no edit
    assert "__inputs" not in board
    [ds] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert (ds["name"], ds["query"]) == ("DS_INFLUXDB", "influxdb")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${DS_INFLUXDB}"
            assert p["targets"], p["title"]


def test_dashboard_has_the_promised_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for words in ("dirty rate per vm", "migration progress", "would converge", "forecast eta",
                  "migratable", "blockers", "per-pass dirty rate vs bandwidth"):
        assert words in titles, words


@pytest.mark.parametrize("query", queries())
def test_every_query_reads_stored_fields_of_the_payloads(query: str) -> None:
    stored = measurements()
    [name] = re.findall(r'FROM "(\w+)"', query)
    assert name in stored, name
    m = stored[name]
    select = query.split(" FROM ", 1)[0]
    used = set(re.findall(r'(?<!AS )"(\w+)"', select))
    assert used, query
    assert used <= m.fields.keys(), used - m.fields.keys()
    payload = wire_fields(m.model)
    for column in used:  # through Telegraf back to the payload model
        assert m.fields[column].split(".")[0] in payload
    rest = query.split(" FROM ", 1)[1]
    tags = set(re.findall(r'"(\w+)" =~', rest)) | set(
        re.findall(r'"(\w+)"', rest.split("GROUP BY", 1)[1] if "GROUP BY" in rest else ""))
    assert tags <= m.tags, tags - m.tags


def test_template_variables_read_stored_tags() -> None:
    stored = measurements()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "datasource":
            continue
        [(name, key)] = re.findall(r'FROM "(\w+)" WITH KEY = "(\w+)"', variable["query"])
        assert key in stored[name].tags


# --- libvirt --------------------------------------------------------------------------------


def test_libvirt_snippet_parses() -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "contrib" / "libvirt" / "qemu-commandline.xml").getroot()
    ns = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    args = [a.attrib["value"] for a in root.iter(f"{ns}arg")]
    assert args[0] == "-chardev" and "server=off" in args[1] and args[2] == "-mon"
