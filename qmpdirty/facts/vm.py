"""Facts about one VM, as QEMU reported them, in qmpdirty's own units (pure core).

Stage: facts. Filled by ``qmp.translate`` from validated QMP replies; read by
``decisions`` and ``telemetry``. No I/O, no clock: every timestamp is a value that
was passed in. Units are in the names (``_bytes``, ``_ms``, ``_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qmpdirty.facts.qemu import QemuVersion

#: QEMU's ``DirtyRateMeasureMode`` (qapi/migration.json).
DirtyRateMode = Literal["page-sampling", "dirty-bitmap", "dirty-ring"]


@dataclass(frozen=True, slots=True)
class VmIdentity:
    """Who a QMP peer is: QEMU's ``-name``, its UUID and (server mode) its pid."""

    name: str | None
    uuid: str | None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class VmInfo:
    """The slowly changing facts published on ``vm/<vm>/info``."""

    qemu_version: str
    qemu_version_tuple: QemuVersion
    uuid: str | None
    machine: str | None
    accel: str | None
    ram_bytes: int | None
    vcpus: int | None
    run_state: str | None
    migration_events: bool | None


@dataclass(frozen=True, slots=True)
class MigrationSnapshot:
    """One ``query-migrate`` reply, translated. ``status`` is None when no migration ran."""

    status: str | None
    total_time_ms: int | None = None
    setup_time_ms: int | None = None
    downtime_ms: int | None = None
    expected_downtime_ms: int | None = None
    transferred_bytes: int | None = None
    remaining_bytes: int | None = None
    total_bytes: int | None = None
    bandwidth_bytes_per_s: float | None = None
    dirty_pages_rate: int | None = None
    page_size: int | None = None
    dirty_sync_count: int | None = None
    vfio_transferred_bytes: int | None = None
    normal_pages: int | None = None
    zero_pages: int | None = None
    throttle_percent: int | None = None
    error_desc: str | None = None
    blocked_reasons: tuple[str, ...] = ()

    @property
    def dirty_bytes_per_s(self) -> float | None:
        """``ram.dirty-pages-rate`` x ``ram.page-size``; None until QEMU has one (0)."""
        if not self.dirty_pages_rate or not self.page_size:
            return None
        return float(self.dirty_pages_rate * self.page_size)


@dataclass(frozen=True, slots=True)
class MigrationParams:
    """``query-migrate-parameters``: what shapes convergence (None when not reported)."""

    downtime_limit_ms: int | None
    max_bandwidth_bytes_per_s: int | None
    avail_switchover_bandwidth_bytes_per_s: int | None = None
    vcpu_dirty_limit_mb_per_s: int | None = None


@dataclass(frozen=True, slots=True)
class DirtyRateMeasurement:
    """A finished ``calc-dirty-rate`` measurement from ``query-dirty-rate``."""

    bytes_per_s: float
    mode: str
    window_s: float
    sample_pages: int | None
    started_at_s: float | None
    vcpu_bytes_per_s: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class QmpEvent:
    """A QMP event: name, data and QEMU's own timestamp in epoch seconds."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    qemu_ts: float | None = None
