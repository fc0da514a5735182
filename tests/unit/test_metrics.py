"""MQTT messages -> Prometheus samples (``telemetry.metrics``) and their exposition
(``sinks.prometheus``): every family from a representative host, in base units; a VM
offline, a topic cleared, a VM forgotten; ``[prometheus] listen``."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from qmpdirty.config.sections import PrometheusConfig
from qmpdirty.sinks.prometheus import PrometheusExporter, Tee
from qmpdirty.telemetry import render
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.metrics import FAMILIES, MetricsState
from qmpdirty.telemetry.topics import TopicKind
from tests.support import metrics_payloads as P

H = {"host": "kvm01"}
V = {**H, "vm": P.VM}


def state(*msgs: Outgoing) -> MetricsState:
    s = MetricsState(P.TOPICS)
    for m in msgs:
        s.ingest(m)
    return s


def values(s: MetricsState) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(x.name, frozenset(x.labels.items())): x.value for x in s.samples()}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({**V, **labels}.items())


EXPECTED = {
    key("qmpdirty_vm_up"): 1,
    key("qmpdirty_vm_status", status="online"): 1,
    key("qmpdirty_vm_status", status="offline"): 0,
    key("qmpdirty_vm_info", qemu_version="10.0.2", machine="pc-q35-10.0"): 1,
    key("qmpdirty_vm_role_info", role="running"): 1,
    key("qmpdirty_vm_memory_bytes"): 2 << 30,
    key("qmpdirty_vm_migratable"): 0,
    key("qmpdirty_vm_blockers"): 1,
    key("qmpdirty_vm_dirty_rate_bytes_per_second", source="calc-dirty-rate",
        mode="page-sampling"): 5e6,
    key("qmpdirty_vm_forecast_info", verdict="converges"): 1,
    key("qmpdirty_vm_forecast_eta_seconds"): 12.5,
    key("qmpdirty_vm_forecast_downtime_seconds"): 0.03,
    key("qmpdirty_migration_info", status="active", role="source"): 1,
    key("qmpdirty_migration_remaining_bytes"): 1 << 20,
    key("qmpdirty_migration_transferred_bytes"): 1 << 30,
    key("qmpdirty_migration_bandwidth_bytes_per_second"): 2.5e8,
    key("qmpdirty_migration_passes"): 2,
    key("qmpdirty_migration_expected_downtime_seconds"): 0.12,
    key("qmpdirty_vfio_device_info", device=P.GPU, mode="device", backend="iommufd"): 1,
    key("qmpdirty_vfio_ranges_fit", device=P.GPU, container="c0"): 1,
    ("qmpdirty_sessions", frozenset(H.items())): 1,
    ("qmpdirty_outbox_queued_messages", frozenset(H.items())): 3,
    ("qmpdirty_outbox_dropped_messages", frozenset(H.items())): 7,
    key("qmpdirty_vm_outbox_dropped_messages"): 7,
    key("qmpdirty_vm_qmp_events_dropped"): 5,
    key("qmpdirty_vm_qmp_events_unreadable"): 2,
    ("qmpdirty_build_info", frozenset({**H, "version": "0.1.0"}.items())): 1,
}


@pytest.mark.parametrize(("series", "value"), EXPECTED.items(), ids=[k[0] for k in EXPECTED])
def test_a_representative_host_gives_each_series_in_base_units(
        series: tuple[str, frozenset[tuple[str, str]]], value: float) -> None:
    assert values(state(*P.ALL))[series] == pytest.approx(value)


def test_every_family_is_fed_and_every_sample_has_its_familys_labels() -> None:
    samples = state(*P.ALL).samples()
    for s in samples:
        assert set(s.labels) == {"host", *FAMILIES[s.name][2]}, s
    assert {s.name for s in samples} == set(FAMILIES)


def test_offline_keeps_the_last_state_but_vm_up_is_0() -> None:
    got = values(state(*P.ALL, render.vm_state(P.TOPICS, P.VM, "offline")))
    assert got[key("qmpdirty_vm_up")] == 0
    assert got[key("qmpdirty_vm_status", status="offline")] == 1
    assert got[key("qmpdirty_vm_migratable")] == 0  # retained on the broker: kept


def test_a_cleared_topic_drops_its_series_and_a_new_source_replaces_the_old() -> None:
    cleared = render.cleared(P.TOPICS, P.VM, TopicKind.DIRTY_RATE)
    got = {x.name for x in state(*P.ALL, cleared).samples()}
    assert "qmpdirty_vm_dirty_rate_bytes_per_second" not in got
    assert "qmpdirty_vm_migratable" in got


def test_a_forgotten_vm_has_no_series_left() -> None:
    forgotten = render.cleared(P.TOPICS, P.VM, TopicKind.VM_STATUS)
    assert {x.labels.get("vm") for x in state(*P.ALL, forgotten).samples()} == {None}


def test_other_hosts_topics_and_bad_payloads_are_ignored() -> None:
    other = Outgoing("qmpdirty/other/vm/web1/status", b"online", 1, True, False, vm="web1")
    bad = Outgoing(P.BLOCKERS.topic, b"{not json", 1, True, vm=P.VM)
    assert state(other, bad).samples() == state().samples()
    assert values(state(*P.ALL, bad)).get(key("qmpdirty_vm_migratable")) is None


def exposition(exporter: PrometheusExporter) -> dict[str, set[str]]:
    """Family name -> label names, as a scraper parses the text format."""
    text = generate_latest(exporter.registry).decode()
    return {f.name: {k for s in f.samples for k in s.labels} for f in
            text_string_to_metric_families(text)}


def test_the_exposition_has_every_family_counters_with_total() -> None:
    exporter = PrometheusExporter(P.TOPICS)
    Tee(exporter).publish(P.DAEMON)
    text = generate_latest(exporter.registry).decode()
    assert "qmpdirty_outbox_dropped_messages_total{host=\"kvm01\"} 7.0" in text
    assert "# TYPE qmpdirty_vm_up gauge" in text  # declared before the first VM
    assert set(exposition(exporter)) == set(FAMILIES)


def test_the_exporter_serves_metrics_over_http() -> None:
    exporter = PrometheusExporter(P.TOPICS)
    for m in P.ALL:
        exporter.publish(m)
    port = exporter.start("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
    finally:
        exporter.stop()
    assert 'qmpdirty_vm_up{host="kvm01",vm="web1"} 1.0' in body


@pytest.mark.parametrize(("listen", "address"), [
    (None, None), ("127.0.0.1:9800", ("127.0.0.1", 9800)), ("[::1]:9800", ("::1", 9800)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
])
def test_listen_is_host_port(listen: str | None, address: tuple[str, int] | None) -> None:
    assert PrometheusConfig(listen=listen).address == address


@pytest.mark.parametrize("listen", ["9800", ":9800", "host:", "host:0", "host:65536",
                                    "::1:9800", "host:http"])
def test_a_bad_listen_is_refused_with_the_form_it_takes(listen: str) -> None:
    with pytest.raises(ValidationError, match=r"HOST:PORT|brackets"):
        PrometheusConfig(listen=listen)
