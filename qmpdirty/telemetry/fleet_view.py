"""The fleet at a glance: one row per VM, from the retained payloads (``qmpdirty top``).

Stage: telemetry (the reading side; pure). ``FleetState.apply`` takes one MQTT message
(topic and payload, as the broker delivers it) and keeps the newest payload of every
topic ``top`` shows, validated with the payload models; ``rows`` turns that into
``VmRow`` values of plain strings and numbers, sorted. A payload that does not validate
is kept as ``invalid`` (its cell shows ``?``), never raised: one bad publisher must not
blank the fleet. An empty payload clears a topic, as on the broker. This module must
not subscribe, print or know the terminal (``cli.top`` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel, ValidationError

from qmpdirty.telemetry.schema import (
    BlockersPayload,
    DirtyRatePayload,
    ForecastPayload,
    InfoPayload,
    MigrationPayload,
    TrackingPayload,
)

SortKey = Literal["name", "status", "dirty", "eta"]
SORT_KEYS: Final[tuple[SortKey, ...]] = ("name", "status", "dirty", "eta")
#: The VM topics ``top`` reads, and their models (``status`` is plain text).
MODELS: Final[dict[str, type[BaseModel]]] = {
    "info": InfoPayload, "blockers": BlockersPayload, "tracking": TrackingPayload,
    "dirty_rate": DirtyRatePayload, "forecast": ForecastPayload, "migration": MigrationPayload,
}
#: Migration statuses after which nothing more moves (no progress bar).
ENDED: Final = frozenset({"none", "completed", "failed", "cancelled"})
#: ``--sort status``: the VMs that need a look first.
_STATUS_RANK: Final = {"error": 0, "unresponsive": 1, "offline": 2, "online": 3}
MIB: Final = float(1 << 20)


@dataclass
class VmState:
    """The newest retained payload of each topic of one VM (``None``: nothing retained,
    ``"invalid"``: a payload the models reject)."""

    status: str | None = None
    payloads: dict[str, BaseModel | Literal["invalid"]] = field(default_factory=dict)

    def get(self, kind: str, model: type[BaseModel]) -> BaseModel | Literal["invalid"] | None:
        value = self.payloads.get(kind)
        return value if value == "invalid" or isinstance(value, model) else None

    @property
    def empty(self) -> bool:
        return self.status is None and not self.payloads


@dataclass
class FleetState:
    """Every VM (and host status) seen under ``prefix``, updated one message at a time."""

    prefix: str
    vms: dict[tuple[str, str], VmState] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)

    def apply(self, topic: str, payload: bytes) -> bool:
        """Take one message; False when the topic is not one ``top`` shows."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return False
        levels = topic[len(head):].split("/")
        if len(levels) == 2 and levels[1] == "status":
            return self._host_status(levels[0], payload)
        if len(levels) != 4 or levels[1] != "vm":
            return False
        host, _, vm, kind = levels
        if kind != "status" and kind not in MODELS:
            return False
        state = self.vms.setdefault((host, vm), VmState())
        if kind == "status":
            state.status = payload.decode("utf-8", "replace") or None
        elif not payload:
            state.payloads.pop(kind, None)
        else:
            state.payloads[kind] = _validated(MODELS[kind], payload)
        if state.empty:
            del self.vms[(host, vm)]
        return True

    def _host_status(self, host: str, payload: bytes) -> bool:
        if payload:
            self.hosts[host] = payload.decode("utf-8", "replace")
        else:
            self.hosts.pop(host, None)
        return True


def _validated(model: type[BaseModel], payload: bytes) -> BaseModel | Literal["invalid"]:
    try:
        return model.model_validate_json(payload)
    except ValidationError:
        return "invalid"


@dataclass(frozen=True, slots=True)
class VmRow:
    """One VM as ``top`` shows it: every cell already text, plus what sorting needs."""

    host: str
    vm: str
    status: str
    role: str
    migratable: str
    vfio: str
    dirty: str
    forecast: str
    migration: str
    progress: float | None = None
    eta_s: float | None = None
    dirty_bytes_per_s: float | None = None


def rows(fleet: FleetState, sort: SortKey = "name") -> list[VmRow]:
    """One row per VM, sorted by ``sort`` (then by host and VM name)."""
    made = [vm_row(host, vm, state, fleet.hosts.get(host))
            for (host, vm), state in fleet.vms.items()]
    made.sort(key=lambda r: (r.host, r.vm))
    match sort:
        case "status":
            made.sort(key=lambda r: _STATUS_RANK.get(r.status, -1))
        case "dirty":
            made.sort(key=lambda r: -(r.dirty_bytes_per_s or -1.0))
        case "eta":
            made.sort(key=lambda r: (r.eta_s is None, r.eta_s or 0.0))
    return made


def vm_row(host: str, vm: str, state: VmState, host_status: str | None) -> VmRow:
    """The row of one VM. A host whose status is ``offline`` (the daemon's will) makes
    every status it retained stale: shown as ``host-offline``."""
    status = state.status or "?"
    if host_status == "offline":
        status = "host-offline"
    info = state.get("info", InfoPayload)
    dirty = state.get("dirty_rate", DirtyRatePayload)
    forecast = state.get("forecast", ForecastPayload)
    migration = state.get("migration", MigrationPayload)
    progress, mig_eta, mig_text = _migration(migration)
    fc_eta = forecast.eta_s if isinstance(forecast, ForecastPayload) else None
    return VmRow(
        host=host, vm=vm, status=status,
        role=_cell(info, lambda i: str(i.role)),
        migratable=_migratable(state.get("blockers", BlockersPayload)),
        vfio=_vfio(state.get("tracking", TrackingPayload)),
        dirty=_cell(dirty, _dirty),
        forecast=_cell(forecast, _forecast),
        migration=mig_text, progress=progress,
        eta_s=mig_eta if mig_eta is not None else fc_eta,
        dirty_bytes_per_s=dirty.bytes_per_s if isinstance(dirty, DirtyRatePayload) else None,
    )


def _cell(value: BaseModel | Literal["invalid"] | None, show: Callable[[Any], object]) -> str:
    """``-`` when nothing is retained, ``?`` when it is invalid, else ``show(value)``."""
    if value is None:
        return "-"
    if value == "invalid":
        return "?"
    return str(show(value))


def _migratable(blockers: BaseModel | Literal["invalid"] | None) -> str:
    """``yes``, or ``no: <first blocker>`` (predicted first, else QEMU's wording)."""
    if not isinstance(blockers, BlockersPayload):
        return _cell(blockers, str)
    if blockers.migratable:
        return "yes"
    first = blockers.predicted[0].text if blockers.predicted else (
        blockers.observed[0] if blockers.observed else "")
    more = len(blockers.predicted) + len(blockers.unmodelled) - 1
    return f"no: {first}" + (f" (+{more})" if more > 0 else "") if first else "no"


def _vfio(tracking: BaseModel | Literal["invalid"] | None) -> str:
    """Each mode with its device count: ``device x2, iommu``; ``none`` with no device."""
    if not isinstance(tracking, TrackingPayload):
        return _cell(tracking, str)
    if not tracking.devices:
        return "none"
    counts = Counter(d.mode for d in tracking.devices)
    return ", ".join(f"{m} x{n}" if n > 1 else m for m, n in sorted(counts.items()))


def _dirty(rate: DirtyRatePayload) -> str:
    text = f"{rate.bytes_per_s / MIB:.1f} MiB/s"
    if rate.error_bound_rel is not None:
        text += f" ±{rate.error_bound_rel * 100:.0f}%"
    return text


def _forecast(forecast: ForecastPayload) -> str:
    if forecast.verdict == "converges" and forecast.eta_s is not None:
        return f"converges {duration(forecast.eta_s)}"
    return str(forecast.verdict)


def _migration(migration: BaseModel | Literal["invalid"] | None
               ) -> tuple[float | None, float | None, str]:
    """The progress (0..1) and ETA of a running migration, and its cell's text; a
    migration that ended shows its status only, with neither."""
    if not isinstance(migration, MigrationPayload):
        return None, None, _cell(migration, str)
    if migration.status in ENDED:
        return None, None, migration.status
    progress = None
    if migration.total_bytes and migration.remaining_bytes is not None:
        progress = min(1.0, max(0.0, 1 - migration.remaining_bytes / migration.total_bytes))
    eta = migration.forecast.eta_s if migration.forecast else None
    if eta is None and migration.remaining_bytes is not None \
            and migration.bandwidth_bytes_per_s:
        eta = migration.remaining_bytes / migration.bandwidth_bytes_per_s
    text = f"{migration.role} {migration.status} pass {migration.pass_}"
    return progress, eta, text


def duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def bar(progress: float, width: int = 20) -> str:
    """A text progress bar: ``[#########-----------]  45%``."""
    filled = round(progress * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {progress * 100:3.0f}%"
