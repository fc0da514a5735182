"""``contrib/grafana/qmpdirty-prometheus.json``: provisions from a file as is (no
``${DS_...}`` input), has the panels README promises, and every metric and label its PromQL
reads is in the ``/metrics`` the exporter serves for a representative host."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from qmpdirty.sinks.prometheus import PrometheusExporter
from tests.support import metrics_payloads as P

ROOT = Path(__file__).resolve().parents[2]
BOARD_PATH = ROOT / "contrib" / "grafana" / "qmpdirty-prometheus.json"
BOARD: dict[str, Any] = json.loads(BOARD_PATH.read_text())
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def exposed() -> dict[str, set[str]]:
    """Metric name (as queried: counters with ``_total``) -> its label names."""
    exporter = PrometheusExporter(P.TOPICS)
    for m in P.ALL:
        exporter.publish(m)
    text = generate_latest(exporter.registry).decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def expressions() -> list[tuple[str, str]]:
    """(PromQL, legend) of every panel target and every query variable."""
    exprs = [(t["expr"], t.get("legendFormat", "")) for p in BOARD["panels"]
             for t in p.get("targets", [])]
    exprs += [(v["definition"], "") for v in BOARD["templating"]["list"] if v["type"] == "query"]
    return exprs


def labels_of(expr: str, legend: str) -> set[str]:
    """Label names a query reads: in selectors, ``by``/``without`` and the legend."""
    used = {m for sel in re.findall(r"\{([^}]*)\}", expr)
            for m in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", sel)}
    used |= {m for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
             for m in re.findall(r"\w+", group)}
    used |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    used |= set(re.findall(r"label_values\([^,]*,\s*(\w+)\)", expr))
    return used


@pytest.mark.parametrize(("expr", "legend"), expressions())
def test_every_metric_and_label_a_query_reads_is_exposed(expr: str, legend: str) -> None:
    metrics = exposed()
    names = set(re.findall(r"\bqmpdirty_\w+", expr))
    assert names, expr
    assert names <= metrics.keys(), names - metrics.keys()
    available = set().union(*(metrics[n] for n in names)) | TARGET_LABELS
    assert labels_of(expr, legend) <= available, labels_of(expr, legend) - available


def test_it_provisions_from_a_file_without_edits() -> None:
    text = BOARD_PATH.read_text()
    assert "__inputs" not in BOARD and "${DS_" not in text
    [ds] = [v for v in BOARD["templating"]["list"] if v["type"] == "datasource"]
    assert ds["query"] == "prometheus"
    refs = [p["datasource"] for p in BOARD["panels"] if p["type"] != "row"]
    refs += [t["datasource"] for p in BOARD["panels"] for t in p.get("targets", [])]
    assert refs and all(r == {"type": "prometheus", "uid": f"${{{ds['name']}}}"} for r in refs)
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    provider = (ROOT / "contrib" / "grafana" / "provisioning" / "qmpdirty.yaml").read_text()
    assert "type: file" in provider


@pytest.mark.parametrize(("title", "metric"), [
    ("vm status", "qmpdirty_vm_status"), ("migratable", "qmpdirty_vm_migratable"),
    ("vfio tracking mode", "qmpdirty_vfio_device_info"),
    ("dirty rate", "qmpdirty_vm_dirty_rate_bytes_per_second"),
    ("forecast eta", "qmpdirty_vm_forecast_eta_seconds"),
    ("forecast verdict", "qmpdirty_vm_forecast_info"),
    ("migration status", "qmpdirty_migration_info"),
    ("remaining and transferred", "qmpdirty_migration_remaining_bytes"),
])
def test_it_has_the_promised_panels(title: str, metric: str) -> None:
    [panel] = [p for p in BOARD["panels"] if p["title"].lower() == title]
    assert any(metric in t["expr"] for t in panel["targets"])
