"""``/metrics`` for Prometheus, from the messages the MQTT sink is fed (shell).

Stage: sinks. ``PrometheusExporter`` is a ``Publisher``: ``Tee`` hands it every message
it hands the MQTT sink, ``telemetry.metrics.MetricsState`` keeps what they say, and a
scrape turns that into samples (README § Prometheus). The HTTP server is
``prometheus_client``'s, on a thread of its own: a scrape never waits for the event loop,
and a lock keeps it from reading the state half-updated. The only module that imports
``prometheus_client``; it must not decide what a metric says (``telemetry.metrics``
does) nor delay the MQTT sink (``publish`` never blocks for long, never raises).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qmpdirty.errors import ConfigError
from qmpdirty.telemetry.message import Outgoing, Publisher
from qmpdirty.telemetry.metrics import FAMILIES, MetricsState, Sample
from qmpdirty.telemetry.topics import Topics

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)


class Tee:
    """A ``Publisher`` that hands each message to every sink, in order."""

    def __init__(self, *sinks: Publisher) -> None:
        self._sinks = sinks

    def publish(self, msg: Outgoing) -> None:
        for sink in self._sinks:
            sink.publish(msg)


def families(samples: list[Sample]) -> list[Metric]:
    """``samples`` as metric families in ``FAMILIES`` order (every family, even empty:
    a dashboard's query finds its metric before the first VM shows up)."""
    made: dict[str, tuple[GaugeMetricFamily | CounterMetricFamily, list[str]]] = {}
    for name, (kind, doc, labels) in FAMILIES.items():
        names = ["host", *labels]
        made[name] = (CounterMetricFamily(name, doc, labels=names) if kind == "counter"
                      else GaugeMetricFamily(name, doc, labels=names)), names
    for s in samples:
        family, names = made[s.name]
        family.add_metric([s.labels.get(label, "") for label in names], s.value)
    return [family for family, _names in made.values()]


class _StateCollector(Collector):
    def __init__(self, exporter: PrometheusExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        yield from families(self._exporter.samples())


class PrometheusExporter:
    """Keeps the metrics state and serves it on ``listen`` (``HOST:PORT``)."""

    def __init__(self, topics: Topics) -> None:
        self._state = MetricsState(topics)
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StateCollector(self))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def publish(self, msg: Outgoing) -> None:
        with self._lock:
            try:
                self._state.ingest(msg)
            except Exception:  # a metric must never take telemetry down
                log.exception("prometheus: could not take %s", msg.topic)

    def samples(self) -> list[Sample]:
        with self._lock:
            return self._state.samples()

    def start(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port``; returns the port (``0``: one picked)."""
        try:
            server, thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            why = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            raise ConfigError("[prometheus]", [("prometheus.listen", why, "")]) from None
        self._server, self._thread = server, thread
        bound = int(server.server_address[1])
        log.info("prometheus: serving /metrics on %s:%d", host, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
