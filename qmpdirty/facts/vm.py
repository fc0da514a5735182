"""Facts about one VM, as QEMU reported them, in qmpdirty's own units (pure core).

Stage: facts. Filled by ``qmp.translate`` from validated QMP replies; read by
``decisions`` and ``telemetry``. No I/O, no clock: every timestamp is a value that
was passed in. Units are in the names (``_bytes``, ``_ms``, ``_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qmpdirty.facts.qemu import QemuVersion, version_text

#: QEMU's ``DirtyRateMeasureMode`` (qapi/migration.json).
DirtyRateMode = Literal["page-sampling", "dirty-bitmap", "dirty-ring"]


@dataclass(frozen=True, slots=True)
class VmIdentity:
    """Who a QMP peer is: QEMU's ``-name``, its UUID and (server mode) its pid."""

    name: str | None
    uuid: str | None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class VmBasics:
    """Which QEMU runs the VM, on which machine, with how much RAM: the facts that
    ``VmInfo`` and ``facts.topology.VmTopology`` share (one value, read once per gather).

    From ``query-version``, ``qom-get /machine type`` and ``query-memory-size-summary``
    (hw/core/machine-qmp-cmds.c ``qmp_query_memory_size_summary``). RAM has one meaning
    per name, in bytes:

    * ``base_ram_bytes``: the ``-m`` size, QEMU's ``current_machine->ram_size``
      (``base-memory``). What QEMU's own VFIO check compares with (11.0
      ``vfio_dirty_tracking_exceed_limit``); memory devices are not in it.
    * ``plugged_ram_bytes``: RAM in memory devices now (pc-dimm, nvdimm, virtio-mem's
      plugged part...; ``plugged-memory``); 0 when QEMU reports none.
    * ``ram_bytes`` (property): both, all the RAM the guest has now: what a migration
      copies, what the forecast caps a pass at, and what ``info`` publishes as
      ``ram_bytes``.
    """

    version: QemuVersion
    machine: str | None  # ``pc-q35-10.0``; None when QEMU did not say
    base_ram_bytes: int
    plugged_ram_bytes: int = 0

    @property
    def ram_bytes(self) -> int:
        """All the guest's RAM now: ``base_ram_bytes`` + ``plugged_ram_bytes``."""
        return self.base_ram_bytes + self.plugged_ram_bytes

    @property
    def version_text(self) -> str:
        """The version as published: ``"10.0.2"``."""
        return version_text(self.version)


@dataclass(frozen=True, slots=True)
class VmInfo:
    """The slowly changing facts published on ``vm/<vm>/info``."""

    basics: VmBasics
    uuid: str | None
    accel: str | None
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
    """A finished ``calc-dirty-rate`` measurement from ``query-dirty-rate`` (one window),
    or several back-to-back windows combined into one figure (``windows`` > 1; see
    ``decisions.migration.dirtyrate.combine``). ``window_s`` is one window's length;
    ``sample_pages`` is per GiB, as QEMU takes it; ``sample_pages_total`` is the pages
    hashed over all windows, when the guest's RAM is known."""

    bytes_per_s: float
    mode: str
    window_s: float
    sample_pages: int | None
    started_at_s: float | None
    vcpu_bytes_per_s: tuple[tuple[int, float], ...] = ()
    windows: int = 1
    sample_pages_total: int | None = None


@dataclass(frozen=True, slots=True)
class QmpEvent:
    """A QMP event: name, data and QEMU's own timestamp in epoch seconds; ``raw`` is the
    message as QEMU sent it (``event``, ``data`` when there is any, ``timestamp``), kept
    for the ``qmp:NAME`` hooks' stdin and never read by the daemon."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    qemu_ts: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class GuestResidency:
    """How much of the guest's RAM the host holds for it, read from the QEMU process's
    mappings (``/proc/<pid>/maps`` and ``pagemap``, sampled): bytes resident or swapped
    out in the mappings that are guest RAM, of ``mapped_bytes`` mapped, and when (epoch
    seconds). A page the host never backed reads as zeros, so this is an upper bound on
    the guest's pages with content (rounded up by transparent huge pages)."""

    resident_bytes: int
    mapped_bytes: int
    at_s: float
    #: where in the largest guest-RAM mapping (the block a migration scans first) the
    #: host backs memory: one byte per ``chunk_bytes``, 1 when the chunk's first page is
    #: backed (a transparent huge page is all or nothing); empty: not read
    resident_map: bytes = b""
    chunk_bytes: int = 0


@dataclass(frozen=True, slots=True)
class GuestMemoryStats:
    """What the guest's virtio-balloon driver last reported of its memory (``guest-stats``):
    free and total in bytes as the guest sees them, and when (epoch seconds)."""

    free_bytes: int
    total_bytes: int | None
    updated_at_s: float
