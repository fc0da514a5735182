"""Models of the QMP replies and events qmpdirty reads (pure core, boundary validation).

Shapes follow QEMU's QAPI schema (qapi/*.json). Unknown fields are ignored because
newer QEMUs add them; missing optional fields are None. ``qemu.qmp`` types every
reply as ``object``: nothing from QEMU is used before it passed one of these models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class VersionTriple(_Wire):
    major: int
    minor: int
    micro: int


class VersionInfo(_Wire):
    """``query-version``."""

    qemu: VersionTriple
    package: str = ""


class NameInfo(_Wire):
    """``query-name``: ``name`` is absent when QEMU was started without ``-name``."""

    name: str | None = None


class UuidInfo(_Wire):
    """``query-uuid``."""

    uuid: str = Field(alias="UUID")


class StatusInfo(_Wire):
    """``query-status``."""

    status: str
    running: bool


class KvmInfo(_Wire):
    """``query-kvm``."""

    enabled: bool
    present: bool


class CpuInfoFast(_Wire):
    """One entry of ``query-cpus-fast``."""

    cpu_index: int = Field(alias="cpu-index")


class MemorySizeSummary(_Wire):
    """``query-memory-size-summary``."""

    base_memory: int = Field(alias="base-memory")
    plugged_memory: int | None = Field(default=None, alias="plugged-memory")


class MigrationCapabilityStatus(_Wire):
    """One entry of ``query-migrate-capabilities``."""

    capability: str
    state: bool


class RamStats(_Wire):
    """``MigrationInfo.ram`` (``mbps`` is megabits/s, ``dirty-pages-rate`` pages/s)."""

    transferred: int = 0
    remaining: int = 0
    total: int = 0
    mbps: float = 0.0
    dirty_pages_rate: int = Field(default=0, alias="dirty-pages-rate")
    page_size: int | None = Field(default=None, alias="page-size")
    dirty_sync_count: int | None = Field(default=None, alias="dirty-sync-count")


class VfioStats(_Wire):
    """``MigrationInfo.vfio`` (QEMU >= 5.2)."""

    transferred: int = 0


class MigrationInfo(_Wire):
    """``query-migrate``; every member is optional, ``status`` absent before any migration."""

    status: str | None = None
    ram: RamStats | None = None
    vfio: VfioStats | None = None
    total_time: int | None = Field(default=None, alias="total-time")
    setup_time: int | None = Field(default=None, alias="setup-time")
    downtime: int | None = None
    expected_downtime: int | None = Field(default=None, alias="expected-downtime")
    cpu_throttle_percentage: int | None = Field(default=None, alias="cpu-throttle-percentage")
    error_desc: str | None = Field(default=None, alias="error-desc")
    blocked_reasons: list[str] = Field(default_factory=list, alias="blocked-reasons")


class DirtyRateVcpu(_Wire):
    id: int
    dirty_rate: int = Field(alias="dirty-rate")


class DirtyRateInfo(_Wire):
    """``query-dirty-rate``: ``dirty-rate`` (MiB/s) only once ``status`` is ``measured``."""

    status: str
    dirty_rate: int | None = Field(default=None, alias="dirty-rate")
    start_time: int | None = Field(default=None, alias="start-time")
    calc_time: int | None = Field(default=None, alias="calc-time")
    calc_time_unit: str = Field(default="second", alias="calc-time-unit")
    sample_pages: int | None = Field(default=None, alias="sample-pages")
    mode: str = "page-sampling"
    vcpu_dirty_rate: list[DirtyRateVcpu] | None = Field(default=None, alias="vcpu-dirty-rate")


class EventTimestamp(_Wire):
    seconds: int
    microseconds: int


class EventMessage(_Wire):
    """A QMP event message: ``{"event", "data"?, "timestamp"}``."""

    event: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: EventTimestamp | None = None
