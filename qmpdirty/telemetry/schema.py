"""Payload models of MQTT contract version 1 (pure core).

Stage: telemetry. One pydantic model per JSON payload; ``docs/schema/*.json`` is
generated from these (``scripts/gen-schema``) and a test fails when it is stale. The
base models live in ``payload`` and the forecast's in ``forecast_schema``; all are
re-exported here.
Every JSON payload carries ``schema``, ``ts`` (epoch seconds), ``host``, ``seq``
and, for VM topics, ``vm``. Units are in key names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qmpdirty.config.hooks import QMP_HOOK_EVENT_PATTERN, HookKind, QmpHookEvent
from qmpdirty.decisions.role import VmRole
from qmpdirty.telemetry.forecast_schema import ForecastPayload as ForecastPayload  # noqa: PLC0414
from qmpdirty.telemetry.forecast_schema import ForecastSummary as ForecastSummary  # noqa: PLC0414
from qmpdirty.telemetry.forecast_schema import Recommendation as Recommendation  # noqa: PLC0414
from qmpdirty.telemetry.payload import Payload as Payload  # noqa: PLC0414 (re-exported)
from qmpdirty.telemetry.payload import VmPayload as VmPayload  # noqa: PLC0414 (re-exported)

SCHEMA_VERSION = 1


class OutboxStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: int = Field(description="non-retained messages the outbox holds at most")
    queued: int = Field(description="non-retained messages waiting for the broker now")
    dropped_total: int = Field(description="non-retained messages dropped on overflow, ever")
    dropped_by_vm: dict[str, int] = Field(
        description="dropped_total by VM (topic name), only VMs that lost any: a VM that "
                    "floods loses its own oldest records first, never a quiet VM's")


class QmpEventStats(BaseModel):
    """QMP events that never became ``event/*`` records, counted since the start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropped_total: int = Field(description="events dropped because a VM's event queue "
                               "(qmp.event_queue_size) was full: the oldest made room")
    dropped_by_vm: dict[str, int] = Field(description="dropped_total by VM, only VMs that "
                                          "lost any")
    unreadable_total: int = Field(
        description="events dropped because they could not be read or published (an "
                    "integer of more than 4,300 digits, data nested too deep, not an "
                    "event's shape); the session carried on")
    unreadable_by_vm: dict[str, int] = Field(description="unreadable_total by VM, only VMs "
                                             "that sent any")


class DaemonPayload(Payload):
    """``<prefix>/<host>/daemon``: the daemon's own state (what was lost is counted here)."""

    version: str
    started_ts: float
    vms_online: int
    vms_known: int
    outbox: OutboxStats
    qmp_events: QmpEventStats
    mqtt_connects: int = Field(description="successful broker connections since start")


class InfoPayload(VmPayload):
    """``vm/<vm>/info``."""

    qemu_version: str
    uuid: str | None
    machine: str | None
    accel: str | None
    ram_bytes: int | None = Field(description="all the guest's RAM now: base-memory (-m) + "
                                  "plugged-memory (memory devices) of "
                                  "query-memory-size-summary")
    vcpus: int | None
    run_state: str | None
    role: VmRole = Field(description="what the VM does, from run_state and its migration "
                         "(README § Role): what is measured and claimed for it")
    role_reason: str = Field(description="the role in words, e.g. why admit says no")
    qmp: str = Field(description="how the daemon reaches this VM (unix:/tcp:/server:)")
    pid: int | None = Field(default=None, description="QEMU pid from SO_PEERCRED on a UNIX "
                            "socket (client and server mode); null over TCP")
    migration_events: bool | None = Field(description="capability `events` is on")


DirtyRateSource = Literal["calc-dirty-rate", "migration", "estimate"]


class VcpuDirtyRate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    bytes_per_s: float


class DirtyRatePayload(VmPayload):
    """``vm/<vm>/dirty_rate``."""

    bytes_per_s: float
    mode: str = Field(description="how dirty pages were counted: page-sampling, "
                      "dirty-bitmap, dirty-ring (calc-dirty-rate), migration-bitmap (the "
                      "migration's own bitmap) or progress-slope (from its progress)")
    source: DirtyRateSource = Field(description="who produced the figure: calc-dirty-rate, "
                                    "migration (QEMU's own) or estimate (qmpdirty's)")
    window_s: float | None
    sample_pages: int | None = Field(default=None, description="page-sampling: pages per GiB")
    windows: int | None = Field(
        default=None, description="calc-dirty-rate: back-to-back windows combined into the figure")
    sample_pages_total: int | None = Field(
        default=None, description="page-sampling: pages hashed over all windows (from the RAM)")
    vcpus: list[VcpuDirtyRate] | None = None
    error_bound_rel: float | None = Field(
        default=None, description="95 % relative error bound of the figure, sampling and "
        "QEMU's truncation to whole MiB/s included; 2 significant digits, rounded up")
    basis: str | None = Field(default=None, description="how the figure was obtained")


class MigrationPayload(VmPayload):
    """``vm/<vm>/migration`` (retained): the migration in progress or the last one."""

    id: str
    uuid: str | None = Field(description="QEMU's -uuid, the same on both ends: with the "
                             "time window it joins them (README § Migrations)")
    role: Literal["source", "destination"]
    status: str = Field(description="QEMU MigrationStatus")
    statuses: list[str] = Field(description="every status seen so far, in order")
    pass_: int = Field(alias="pass", description="dirty-memory passes completed")
    started_ts: float
    elapsed_s: float
    transferred_bytes: int | None
    remaining_bytes: int | None
    total_bytes: int | None
    bandwidth_bytes_per_s: float | None
    dirty_bytes_per_s: float | None = Field(
        description="ram.dirty-pages-rate x page-size; null until QEMU has one"
    )
    vfio_transferred_bytes: int | None
    expected_downtime_ms: int | None
    throttle_percent: int | None
    error: str | None
    forecast: ForecastSummary | None = None
    recommendations: list[Recommendation] = Field(default_factory=list)
    vfio_devices: dict[str, str] = Field(default_factory=dict, description="VFIO_MIGRATION "
                                         "device-state per device (qom path), 9.1+")


class PassPayload(VmPayload):
    """``vm/<vm>/migration/pass`` (not retained): one record per MIGRATION_PASS."""

    id: str
    uuid: str | None = Field(description="QEMU's -uuid")
    pass_: int = Field(alias="pass")
    elapsed_s: float
    transferred_bytes: int | None
    remaining_bytes: int | None
    total_bytes: int | None
    bandwidth_bytes_per_s: float | None
    dirty_bytes_per_s: float | None
    dirty_sync_count: int | None
    throttle_percent: int | None
    vfio_transferred_bytes: int | None


class ErrorCausePayload(BaseModel):
    """``error-desc`` parsed: what failed, on which device, with which errno."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    device: str | None
    errno: str | None


class SummaryPayload(VmPayload):
    """``vm/<vm>/migration/summary`` (retained): how a migration ended."""

    id: str
    uuid: str | None = Field(description="QEMU's -uuid, the same on both ends")
    role: Literal["source", "destination"]
    outcome: Literal["completed", "failed", "cancelled", "lost"]
    statuses: list[str]
    started_ts: float
    ended_ts: float
    total_time_ms: int | None = Field(description="QEMU's total-time, else measured here")
    setup_time_ms: int | None
    downtime_ms: int | None
    transferred_bytes: int | None
    total_bytes: int | None
    vfio_transferred_bytes: int | None
    passes: int
    peak_dirty_bytes_per_s: float | None
    error: str | None = Field(description="QEMU's error-desc")
    error_cause: ErrorCausePayload | None = Field(default=None, description="the cause when "
                                                  "QEMU's text allows (see migration_errors)")
    vfio_devices: dict[str, str] = Field(default_factory=dict, description="last "
                                         "VFIO_MIGRATION device-state per device (qom path)")


class EventPayload(VmPayload):
    """``vm/<vm>/event/<EVENT>`` (not retained): every QMP event, as QEMU sent it."""

    event: str
    data: dict[str, Any]
    qemu_ts: float | None


class HookResultPayload(VmPayload):
    """``vm/<vm>/hook`` (not retained): a hook that failed (non-zero exit, timeout, no
    executable). Successful runs are only logged."""

    event: HookKind | Annotated[QmpHookEvent, Field(pattern=QMP_HOOK_EVENT_PATTERN)] = Field(
        description="the event the hook ran for: its kind, or qmp:NAME for a QMP event")
    command: list[str]
    exit_code: int | None = Field(description="negative: killed by that signal; null: "
                                  "never started")
    timed_out: bool
    error: str | None
    duration_s: float


class VmErrorPayload(VmPayload):
    """``vm/<vm>/error`` (retained while it lasts): why the VM's status is ``error``.
    Cleared (an empty retained message) when the VM is ``online`` again."""

    reason: str = Field(description="one line: what the QMP peer did wrong")
    qmp: str = Field(description="the address or socket the peer was reached on")


#: Topic suffix -> payload model: the source of docs/schema/*.json.
PAYLOADS: dict[str, type[Payload]] = {
    "daemon": DaemonPayload,
    "info": InfoPayload,
    "dirty_rate": DirtyRatePayload,
    "migration": MigrationPayload,
    "migration.pass": PassPayload,
    "migration.summary": SummaryPayload,
    "event": EventPayload,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every payload as consumers receive it (serialization mode:
    every field is present), keyed by file stem (as in docs/schema/)."""
    return {name: model.model_json_schema(by_alias=True, mode="serialization")
            for name, model in PAYLOADS.items()}


class IovaRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iova: int
    length: int


#: How a fact or decision was reached (README § How a VFIO decision was reached).
Basis = Literal["host", "qemu", "driver", "assumed"]
BASIS_DOC = ("how it was reached: host (read from sysfs/debugfs or a QOM property), qemu "
             "(inferred from QEMU's observed blocked-reasons), driver (known driver "
             "behaviour: the driver table or [[device_caps]]) or assumed (a default for a "
             "fact nobody could know); the weakest basis of the facts it rests on")


class FactBasis(BaseModel):
    """One fact a decision rests on, the value it used and how that value is known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="migration, dma_logging, iommu_dirty_tracking, p2p, "
                      "behind_viommu, or the QOM property that decided (enable-migration...)")
    value: bool | str = Field(description="the value used; for basis assumed, the default")
    device: str | None = Field(description="qom path of the device it is about (a container's "
                               "engine also rests on the other members' facts)")
    basis: Basis
    reason: str = Field(description="where the value comes from (file, rule, QEMU blocker)")


class TrackedDevice(BaseModel):
    """One VFIO device: how QEMU will track its dirty pages, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None
    qom_path: str
    qom_type: str
    host_bdf: str | None
    name: str = Field(description="QEMU's vbasedev name, the %s of its blockers")
    driver: str | None
    backend: Literal["legacy", "iommufd", "vfio-user", "none"]
    container: str | None
    mode: Literal["device", "iommu", "all-dirty", "unsafe", "blocked", "failover"]
    reasons: list[str]
    basis: Basis = Field(default="assumed", description=f"the mode's basis: {BASIS_DOC}")
    basis_reason: str = Field(default="", description="the weakest facts the mode rests on, "
                              "with reasons")
    facts: list[FactBasis] = Field(default_factory=list,
                                   description="every fact the mode rests on")


class TrackedContainer(BaseModel):
    """One VFIO container (IOMMU context) and the engine QEMU starts for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    backend: Literal["legacy", "iommufd", "vfio-user", "none"]
    mode: Literal["device", "iommu", "all-dirty", "none"]
    devices: list[str] = Field(description="qom paths")
    reasons: list[str]
    basis: Basis = Field(default="assumed", description=f"the engine's basis: {BASIS_DOC}")
    basis_reason: str = Field(default="", description="the weakest facts the engine rests on")
    ranges: list[IovaRange] = Field(description="DMA-logging ranges QEMU computes at log start")
    fits: bool | None = Field(description="ranges accepted by kernel and drivers; null: unknown")
    limits: list[str] = Field(description="what the fit check found, per device and rule")
    optimal_ranges: list[IovaRange] | None = Field(
        description="fewest-bytes cover of the mapped ranges within the device range limit")


class TrackingPayload(VmPayload):
    """``vm/<vm>/tracking``: VFIO dirty tracking per device and container."""

    qemu_version: str
    devices: list[TrackedDevice]
    containers: list[TrackedContainer]
    realize_errors: list[str] = Field(description="blockers enable-migration=on turns into "
                                      "realize errors (facts contradict the running VM)")
    complete: bool = Field(description="false when a decision rests on a fact nobody could "
                           "know (a fact of basis assumed)")


class PredictedBlocker(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(description="QEMU's exact wording for the running version")
    device: str | None = Field(description="qom path; null for a global blocker")
    cause: str
    remedy: str
    basis: Basis = Field(default="assumed", description=f"the prediction's basis: {BASIS_DOC}")
    basis_reason: str = Field(default="", description="the weakest facts the prediction "
                              "rests on")


# The fields added with ``basis`` have defaults only so that payloads retained by an older
# daemon still parse (``admit`` reads them back); the daemon always sends them.


class UnknownFact(BaseModel):
    """A fact behind a disagreement with QEMU that could not be known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str | None = Field(description="qom path; null: not about one device")
    fact: str = Field(description="its name (as in tracking facts), or 'migration mode'")
    reason: str


class BlockersPayload(VmPayload):
    """``vm/<vm>/blockers``: can the VM migrate now, predicted and observed reasons."""

    migratable: bool = Field(description="what QEMU would do: no blocked-reasons")
    predicted: list[PredictedBlocker]
    observed: list[str] = Field(description="query-migrate blocked-reasons, verbatim")
    agree: bool | None = Field(description="predicted set == observed blockers of the kinds "
                               "qmpdirty models (VFIO); null: nothing was compared (no VFIO "
                               "device and no VFIO blocker observed)")
    missing: list[str] = Field(description="predicted but not observed")
    unexpected: list[str] = Field(description="observed VFIO blockers not predicted")
    unmodelled: list[str] = Field(description="observed blockers of kinds qmpdirty does not "
                                  "model (e.g. a read-write vvfat drive); never in agree")
    unknown_facts: list[UnknownFact] = Field(
        default_factory=list,
        description="when agree is false: the facts behind the difference that could not be "
                    "known")


PAYLOADS["forecast"] = ForecastPayload
PAYLOADS["hook"] = HookResultPayload
PAYLOADS["error"] = VmErrorPayload
PAYLOADS["tracking"] = TrackingPayload
PAYLOADS["blockers"] = BlockersPayload
