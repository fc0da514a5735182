"""The MQTT messages -> Prometheus samples (pure core).

Stage: telemetry. ``MetricsState`` is fed every ``Outgoing`` the MQTT sink is fed and
keeps, per VM, its status and the last payload of each retained topic it maps; ``samples``
turns that into samples of the families in ``FAMILIES`` (README § Prometheus). A VM
follows what MQTT says: ``offline`` sets ``qmpdirty_vm_up`` to 0 and keeps the rest (as the
broker keeps the retained topics); an empty message on a topic drops what it mapped to; an
empty ``status`` (the VM forgotten) drops every series of the VM. A rendered message is
taken by its ``TopicKind`` and payload model, parsing nothing; only a message no renderer
made (bytes built by hand) is placed by its topic and parsed. It must not import
``prometheus_client`` (``sinks.prometheus`` does), nor do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.topics import TopicKind, Topics

MetricType = Literal["gauge", "counter"]

#: name -> (type, help, labels besides ``host``). Counters are named without ``_total``
#: here; ``prometheus_client`` adds it on exposition.
FAMILIES: dict[str, tuple[MetricType, str, tuple[str, ...]]] = {
    "qmpdirty_vm_up": ("gauge", "1 while the VM's status is online, else 0", ("vm",)),
    "qmpdirty_vm_status": ("gauge", "1 for the VM's current status (online, offline, "
                           "unresponsive, error), 0 for the others", ("vm", "status")),
    "qmpdirty_vm_info": ("gauge", "QEMU version and machine of the VM (always 1)",
                         ("vm", "qemu_version", "machine")),
    "qmpdirty_vm_role_info": ("gauge", "the VM's role (README § Role; always 1)",
                              ("vm", "role")),
    "qmpdirty_vm_memory_bytes": ("gauge", "guest RAM", ("vm",)),
    "qmpdirty_vm_vcpus": ("gauge", "guest vCPUs", ("vm",)),
    "qmpdirty_vm_migratable": ("gauge", "1 when QEMU reports no migration blocker",
                               ("vm",)),
    "qmpdirty_vm_blockers": ("gauge", "migration blockers QEMU reports (observed)", ("vm",)),
    "qmpdirty_vm_predicted_blockers": ("gauge", "migration blockers qmpdirty predicts",
                                       ("vm",)),
    "qmpdirty_vm_dirty_rate_bytes_per_second": (
        "gauge", "guest memory dirty rate, by who measured it (source) and how (mode)",
        ("vm", "source", "mode")),
    "qmpdirty_vm_forecast_info": ("gauge", "the forecast's verdict (always 1)",
                                  ("vm", "verdict")),
    "qmpdirty_vm_forecast_eta_seconds": ("gauge", "forecast migration duration", ("vm",)),
    "qmpdirty_vm_forecast_downtime_seconds": ("gauge", "forecast downtime", ("vm",)),
    "qmpdirty_vm_forecast_passes": ("gauge", "forecast pre-copy passes", ("vm",)),
    "qmpdirty_migration_info": ("gauge", "the migration in progress or the last one: QEMU "
                                "status and this end's role (always 1)",
                                ("vm", "status", "role")),
    "qmpdirty_migration_remaining_bytes": ("gauge", "RAM still to send", ("vm",)),
    "qmpdirty_migration_transferred_bytes": ("gauge", "RAM sent so far", ("vm",)),
    "qmpdirty_migration_total_bytes": ("gauge", "RAM to migrate", ("vm",)),
    "qmpdirty_migration_bandwidth_bytes_per_second": ("gauge", "migration bandwidth",
                                                      ("vm",)),
    "qmpdirty_migration_passes": ("gauge", "dirty-memory passes completed", ("vm",)),
    "qmpdirty_migration_expected_downtime_seconds": ("gauge", "QEMU's expected downtime",
                                                     ("vm",)),
    "qmpdirty_migration_elapsed_seconds": ("gauge", "time since the migration started",
                                           ("vm",)),
    "qmpdirty_vfio_device_info": ("gauge", "how QEMU tracks a VFIO device's dirty pages "
                                  "(mode) and its backend (always 1)",
                                  ("vm", "device", "mode", "backend")),
    "qmpdirty_vfio_ranges_fit": ("gauge", "1 when the DMA-logging ranges of the device's "
                                 "container fit the kernel's and driver's limits (absent: "
                                 "unknown)", ("vm", "device", "container")),
    "qmpdirty_sessions": ("gauge", "VMs with a QMP session up", ()),
    "qmpdirty_vms_known": ("gauge", "VMs the daemon remembers", ()),
    "qmpdirty_outbox_capacity_messages": ("gauge", "non-retained messages the outbox holds "
                                          "at most", ()),
    "qmpdirty_outbox_queued_messages": ("gauge", "non-retained messages waiting for the "
                                        "broker", ()),
    "qmpdirty_outbox_dropped_messages": ("counter", "non-retained messages dropped on "
                                         "outbox overflow", ()),
    "qmpdirty_vm_outbox_dropped_messages": ("counter", "the VM's non-retained messages "
                                            "dropped on outbox overflow", ("vm",)),
    "qmpdirty_vm_qmp_events_dropped": ("counter", "the VM's QMP events dropped because its "
                                       "event queue was full", ("vm",)),
    "qmpdirty_vm_qmp_events_unreadable": ("counter", "the VM's QMP events dropped because "
                                          "they could not be read or published", ("vm",)),
    "qmpdirty_mqtt_connects": ("counter", "successful broker connections", ()),
    "qmpdirty_start_time_seconds": ("gauge", "when the daemon started, epoch seconds", ()),
    "qmpdirty_build_info": ("gauge", "the daemon's version (always 1)", ("version",)),
}

_STATUSES = ("online", "offline", "unresponsive", "error")
#: The retained VM kinds that feed a metric, and the model each one's payload is.
_MODELS: dict[TopicKind, type[schema.Payload]] = {
    TopicKind.INFO: schema.InfoPayload,
    TopicKind.BLOCKERS: schema.BlockersPayload,
    TopicKind.DIRTY_RATE: schema.DirtyRatePayload,
    TopicKind.FORECAST: schema.ForecastPayload,
    TopicKind.MIGRATION: schema.MigrationPayload,
    TopicKind.TRACKING: schema.TrackingPayload,
}
_VM_KINDS = {k.suffix: k for k in TopicKind if k.scope == "vm"}


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample: a family of ``FAMILIES``, its labels (``host`` included), a value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass
class VmView:
    """What the metrics of one VM are made of: its status and last payloads by kind."""

    status: str | None = None
    payloads: dict[TopicKind, schema.Payload] = field(default_factory=dict)


@dataclass
class MetricsState:
    """Every VM's view and the daemon's payload, updated message by message."""

    topics: Topics
    vms: dict[str, VmView] = field(default_factory=dict)
    daemon: schema.DaemonPayload | None = None

    def ingest(self, msg: Outgoing) -> None:
        """Take one message as the broker would; other topics and payloads that are not
        their kind's model are ignored (the MQTT contract's tests own the payloads)."""
        kind, model = (msg.kind, msg.model) if msg.kind is not None else self._read(msg)
        match kind, model:
            case TopicKind.DAEMON, schema.DaemonPayload():
                self.daemon = model
            case TopicKind.VM_STATUS, _ if msg.vm and not msg.payload:
                self.vms.pop(msg.vm, None)  # forgotten
            case TopicKind.VM_STATUS, _ if msg.vm:
                self.vms.setdefault(msg.vm, VmView()).status = msg.payload.decode()
            case TopicKind(), _ if msg.vm and kind in _MODELS:
                view = self.vms.setdefault(msg.vm, VmView())
                if isinstance(model, _MODELS[kind]):
                    view.payloads[kind] = model
                else:  # cleared, or not a payload of its kind
                    view.payloads.pop(kind, None)

    def _read(self, msg: Outgoing) -> tuple[TopicKind | None, schema.Payload | None]:
        """A message no renderer made: its kind from the topic (this host's only), its
        model parsed from the bytes (None: empty or unreadable)."""
        if msg.topic == self.topics.host_topic(TopicKind.DAEMON):
            return TopicKind.DAEMON, _parse(schema.DaemonPayload, msg.payload)
        base = f"{self.topics.prefix}/{self.topics.host}/vm/{msg.vm}/"
        if not msg.vm or not msg.topic.startswith(base):
            return None, None
        kind = _VM_KINDS.get(msg.topic.removeprefix(base))
        model = _MODELS.get(kind) if kind is not None else None
        return kind, _parse(model, msg.payload) if model and msg.payload else None

    def samples(self) -> list[Sample]:
        """Every sample now, the daemon's first, then VM by VM in name order."""
        host = self.topics.host
        out = daemon_samples(host, self.daemon, set(self.vms)) \
            if self.daemon is not None else []
        for name in sorted(self.vms):
            out.extend(vm_samples(host, name, self.vms[name]))
        return out


def _parse(model: type[schema.Payload], payload: bytes) -> schema.Payload | None:
    try:
        return model.model_validate_json(payload)
    except ValidationError:
        return None


def daemon_samples(host: str, d: schema.DaemonPayload, vms: set[str]) -> list[Sample]:
    """The daemon's own series, from its ``daemon`` payload; its per-VM counts only for
    ``vms`` (a forgotten VM leaves no series behind)."""
    h = {"host": host}
    return [
        Sample("qmpdirty_sessions", h, d.vms_online),
        Sample("qmpdirty_vms_known", h, d.vms_known),
        Sample("qmpdirty_outbox_capacity_messages", h, d.outbox.capacity),
        Sample("qmpdirty_outbox_queued_messages", h, d.outbox.queued),
        Sample("qmpdirty_outbox_dropped_messages", h, d.outbox.dropped_total),
        Sample("qmpdirty_mqtt_connects", h, d.mqtt_connects),
        Sample("qmpdirty_start_time_seconds", h, d.started_ts),
        Sample("qmpdirty_build_info", {**h, "version": d.version}, 1),
        *(Sample(name, {**h, "vm": vm}, n)
          for name, by_vm in (("qmpdirty_vm_outbox_dropped_messages", d.outbox.dropped_by_vm),
                              ("qmpdirty_vm_qmp_events_dropped", d.qmp_events.dropped_by_vm),
                              ("qmpdirty_vm_qmp_events_unreadable",
                               d.qmp_events.unreadable_by_vm))
          for vm, n in sorted(by_vm.items()) if vm in vms),
    ]


def vm_samples(host: str, vm: str, view: VmView) -> list[Sample]:
    """One VM's series from its status and payloads (a missing value: no sample)."""
    h = {"host": host, "vm": vm}
    out: list[Sample] = []
    if view.status is not None:
        out.append(Sample("qmpdirty_vm_up", h, float(view.status == "online")))
        out.extend(Sample("qmpdirty_vm_status", {**h, "status": s}, float(view.status == s))
                   for s in _STATUSES)
    p = view.payloads
    if isinstance(info := p.get(TopicKind.INFO), schema.InfoPayload):
        out += _info(h, info)
    if isinstance(b := p.get(TopicKind.BLOCKERS), schema.BlockersPayload):
        out += [Sample("qmpdirty_vm_migratable", h, float(b.migratable)),
                Sample("qmpdirty_vm_blockers", h, len(b.observed)),
                Sample("qmpdirty_vm_predicted_blockers", h, len(b.predicted))]
    if isinstance(r := p.get(TopicKind.DIRTY_RATE), schema.DirtyRatePayload):
        out.append(Sample("qmpdirty_vm_dirty_rate_bytes_per_second",
                          {**h, "source": r.source, "mode": r.mode}, r.bytes_per_s))
    if isinstance(f := p.get(TopicKind.FORECAST), schema.ForecastPayload):
        out.append(Sample("qmpdirty_vm_forecast_info", {**h, "verdict": f.verdict}, 1))
        out += _optional(h, [("qmpdirty_vm_forecast_eta_seconds", f.eta_s, 1),
                             ("qmpdirty_vm_forecast_downtime_seconds", f.downtime_ms, 1e-3),
                             ("qmpdirty_vm_forecast_passes", f.passes, 1)])
    if isinstance(m := p.get(TopicKind.MIGRATION), schema.MigrationPayload):
        out += _migration(h, m)
    if isinstance(t := p.get(TopicKind.TRACKING), schema.TrackingPayload):
        out += _tracking(h, t)
    return out


def _optional(h: dict[str, str], values: list[tuple[str, float | None, float]]
              ) -> list[Sample]:
    """A sample per value that is known, scaled to base units."""
    return [Sample(name, h, v * scale) for name, v, scale in values if v is not None]


def _info(h: dict[str, str], info: schema.InfoPayload) -> list[Sample]:
    out = [Sample("qmpdirty_vm_info", {**h, "qemu_version": info.qemu_version,
                                       "machine": info.machine or ""}, 1),
           Sample("qmpdirty_vm_role_info", {**h, "role": info.role}, 1)]
    return out + _optional(h, [("qmpdirty_vm_memory_bytes", info.ram_bytes, 1),
                               ("qmpdirty_vm_vcpus", info.vcpus, 1)])


def _migration(h: dict[str, str], m: schema.MigrationPayload) -> list[Sample]:
    out = [Sample("qmpdirty_migration_info", {**h, "status": m.status, "role": m.role}, 1),
           Sample("qmpdirty_migration_passes", h, m.pass_),
           Sample("qmpdirty_migration_elapsed_seconds", h, m.elapsed_s)]
    return out + _optional(h, [
        ("qmpdirty_migration_remaining_bytes", m.remaining_bytes, 1),
        ("qmpdirty_migration_transferred_bytes", m.transferred_bytes, 1),
        ("qmpdirty_migration_total_bytes", m.total_bytes, 1),
        ("qmpdirty_migration_bandwidth_bytes_per_second", m.bandwidth_bytes_per_s, 1),
        ("qmpdirty_migration_expected_downtime_seconds", m.expected_downtime_ms, 1e-3),
    ])


def _tracking(h: dict[str, str], t: schema.TrackingPayload) -> list[Sample]:
    out = [Sample("qmpdirty_vfio_device_info", {**h, "device": d.qom_path, "mode": d.mode,
                                                "backend": d.backend}, 1)
           for d in t.devices]
    for c in t.containers:
        if c.fits is not None:
            out.extend(Sample("qmpdirty_vfio_ranges_fit",
                              {**h, "device": dev, "container": c.id}, float(c.fits))
                       for dev in c.devices)
    return out
