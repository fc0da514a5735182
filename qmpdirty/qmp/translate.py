"""Validated QMP replies -> facts, QMP events -> typed observations (pure core).

Stage: translate. Takes the ``object`` that ``qemu.qmp`` returns, validates it with a
``wire`` model and converts it to a ``facts`` value in qmpdirty's units. A reply of
the wrong shape becomes ``QmpReplyError`` naming the command. Events are read here,
once: ``observation_from`` is the only code that looks at an event's name or
``data``. Nothing here does I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from qmpdirty.errors import QmpReplyError
from qmpdirty.facts.events import (
    DeviceStateSeen,
    EventObservation,
    MigrationPassSeen,
    MigrationStatusSeen,
    OtherEvent,
    RunStateChanged,
    RunStateEvent,
    TopologyChanged,
    TopologyEvent,
)
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.vm import (
    DirtyRateMeasurement,
    GuestMemoryStats,
    MigrationParams,
    MigrationSnapshot,
    QmpEvent,
    VmBasics,
    VmIdentity,
    VmInfo,
)
from qmpdirty.qmp import wire

if TYPE_CHECKING:  # replies parses with this module's helpers: no import at run time
    from qmpdirty.qmp.topology.replies import QomChild

_M = TypeVar("_M", bound=BaseModel)
_MIB = 1024 * 1024
_NULL_UUID = "00000000-0000-0000-0000-000000000000"


def parse_reply(model: type[_M], command: str, reply: object) -> _M:
    """Validate one reply; a mismatch names the command and the first bad field."""
    try:
        return model.model_validate(reply)
    except ValidationError as exc:
        raise QmpReplyError(f"{command}: unexpected reply: {_first_error(exc)}") from exc


@functools.cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    """One adapter per model: building one generates a schema, far too costly per reply."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def parse_reply_list(model: type[_M], command: str, reply: object) -> list[_M]:
    """Validate a reply that is a JSON array of ``model``."""
    try:
        return _list_adapter(model).validate_python(reply)
    except ValidationError as exc:
        raise QmpReplyError(f"{command}: unexpected reply: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "<reply>"
    return f"{where}: {err['msg']}"


def identity_from(name_reply: object, uuid_reply: object, pid: int | None) -> VmIdentity:
    """``query-name`` + ``query-uuid`` -> identity; the all-zero UUID means none was set."""
    name = parse_reply(wire.NameInfo, "query-name", name_reply).name or None
    uuid = parse_reply(wire.UuidInfo, "query-uuid", uuid_reply).uuid
    return VmIdentity(name=name, uuid=None if uuid == _NULL_UUID else uuid, pid=pid)


def version_from(reply: object) -> QemuVersion:
    """``query-version`` -> (major, minor, micro)."""
    q = parse_reply(wire.VersionInfo, "query-version", reply).qemu
    return (q.major, q.minor, q.micro)


def machine_from(qom_type: object) -> str | None:
    """``qom-get /machine type`` (``pc-q35-10.0-machine``) -> ``pc-q35-10.0``."""
    if not isinstance(qom_type, str) or not qom_type:
        return None
    return qom_type.removesuffix("-machine")


def basics_from(version: QemuVersion, machine: str | None, memory_reply: object) -> VmBasics:
    """Version, machine and ``query-memory-size-summary`` -> ``VmBasics`` (``plugged-memory``
    is absent when this QEMU has no memory devices: 0)."""
    mem = parse_reply(wire.MemorySizeSummary, "query-memory-size-summary", memory_reply)
    return VmBasics(version=version, machine=machine, base_ram_bytes=mem.base_memory,
                    plugged_ram_bytes=mem.plugged_memory or 0)


def migration_events_from(reply: object) -> bool:
    """``query-migrate-capabilities`` -> whether capability ``events`` is on."""
    caps = parse_reply_list(wire.MigrationCapabilityStatus, "query-migrate-capabilities", reply)
    return any(c.capability == "events" and c.state for c in caps)


def info_from(
    *,
    version: QemuVersion,
    identity: VmIdentity,
    machine: str | None,
    kvm_reply: object,
    status_reply: object,
    cpus_reply: object,
    memory_reply: object,
    migration_events: bool | None,
) -> VmInfo:
    """Assemble the ``info`` facts from the individual query replies.

    ``accel`` comes from ``query-kvm``: ``kvm`` when enabled, else ``tcg`` (x86 QEMU
    has no other accelerator on Linux; ``query-accelerators`` is not in 10.0).
    """
    kvm = parse_reply(wire.KvmInfo, "query-kvm", kvm_reply)
    status = parse_reply(wire.StatusInfo, "query-status", status_reply)
    cpus = parse_reply_list(wire.CpuInfoFast, "query-cpus-fast", cpus_reply)
    return VmInfo(
        basics=basics_from(version, machine, memory_reply),
        uuid=identity.uuid,
        accel="kvm" if kvm.enabled else "tcg",
        vcpus=len(cpus),
        run_state=status.status,
        migration_events=migration_events,
    )


def run_state_from(reply: object) -> str:
    """``query-status`` -> the run state string (``running``, ``paused``, ``inmigrate``...)."""
    return parse_reply(wire.StatusInfo, "query-status", reply).status


def migration_snapshot_from(reply: object) -> MigrationSnapshot:
    """``query-migrate`` -> snapshot. ``ram.mbps`` is megabits/s: x 1e6 / 8 for bytes/s."""
    info = parse_reply(wire.MigrationInfo, "query-migrate", reply)
    ram = info.ram
    return MigrationSnapshot(
        status=info.status,
        total_time_ms=info.total_time,
        setup_time_ms=info.setup_time,
        downtime_ms=info.downtime,
        expected_downtime_ms=info.expected_downtime,
        transferred_bytes=ram.transferred if ram else None,
        remaining_bytes=ram.remaining if ram else None,
        total_bytes=ram.total if ram else None,
        bandwidth_bytes_per_s=ram.mbps * 1e6 / 8 if ram else None,
        dirty_pages_rate=ram.dirty_pages_rate if ram else None,
        page_size=ram.page_size if ram else None,
        dirty_sync_count=ram.dirty_sync_count if ram else None,
        vfio_transferred_bytes=info.vfio.transferred if info.vfio else None,
        normal_pages=ram.normal if ram else None,
        zero_pages=ram.duplicate if ram else None,
        throttle_percent=info.cpu_throttle_percentage,
        error_desc=info.error_desc,
        blocked_reasons=tuple(info.blocked_reasons),
    )


def migration_params_from(reply: object) -> MigrationParams:
    """``query-migrate-parameters`` -> the members that shape convergence."""
    p = parse_reply(wire.MigrationParameters, "query-migrate-parameters", reply)
    return MigrationParams(p.downtime_limit, p.max_bandwidth, p.avail_switchover_bandwidth,
                           p.vcpu_dirty_limit)


def dirty_rate_from(reply: object) -> DirtyRateMeasurement | None:
    """``query-dirty-rate`` -> measurement, or None while not yet ``measured``.

    ``dirty-rate`` is MiB/s; ``calc-time`` is in ``calc-time-unit`` (QEMU >= 8.2,
    seconds before that).
    """
    info = parse_reply(wire.DirtyRateInfo, "query-dirty-rate", reply)
    if info.status != "measured" or info.dirty_rate is None:
        return None
    scale = 0.001 if info.calc_time_unit == "millisecond" else 1.0
    vcpus = tuple((v.id, float(v.dirty_rate * _MIB)) for v in info.vcpu_dirty_rate or ())
    return DirtyRateMeasurement(
        bytes_per_s=float(info.dirty_rate * _MIB),
        mode=info.mode,
        window_s=(info.calc_time or 0) * scale,
        sample_pages=info.sample_pages if info.mode == "page-sampling" else None,
        started_at_s=float(info.start_time) if info.start_time is not None else None,
        vcpu_bytes_per_s=vcpus,
    )


#: How deep an event's ``data`` may nest. QEMU's events nest a few levels; the payload
#: that publishes ``data`` must stay within what its JSON encoder takes (~250 levels).
MAX_EVENT_DEPTH = 200


#: QOM types of a virtio-balloon (hw/virtio/virtio-balloon-pci.c, -ccw.c, virtio-balloon.c).
BALLOON_TYPES = frozenset({"virtio-balloon-pci", "virtio-balloon-pci-transitional",
                           "virtio-balloon-pci-non-transitional", "virtio-balloon-ccw",
                           "virtio-balloon-device"})
_UNREPORTED = 2**64 - 1  # a guest-stats value the guest has not reported


def balloon_in(listed: Mapping[str, Sequence[QomChild]]) -> str | None:
    """The path of the first virtio-balloon among listed containers' children, if any."""
    return next((c.path for children in listed.values() for c in children
                 if c.qom_type in BALLOON_TYPES), None)


def guest_memory_from(reply: object) -> GuestMemoryStats | None:
    """A balloon's ``guest-stats`` -> the guest's free and total memory, or None until the
    guest has reported its free memory (no driver, or no polling interval set)."""
    info = parse_reply(wire.GuestStats, "qom-get guest-stats", reply)
    free = info.stats.get("stat-free-memory", _UNREPORTED)
    total = info.stats.get("stat-total-memory", _UNREPORTED)
    if info.last_update == 0 or free == _UNREPORTED:
        return None
    return GuestMemoryStats(free_bytes=free, total_bytes=None if total == _UNREPORTED else total,
                            updated_at_s=float(info.last_update))


def event_from(message: object) -> QmpEvent:
    """A raw event message -> ``QmpEvent`` with QEMU's timestamp as epoch seconds. An
    event that cannot be published as it came - ``data`` nested deeper than
    ``MAX_EVENT_DEPTH``, or holding a string that is no Unicode text (a lone surrogate,
    which JSON's ``\\ud800`` escape can carry) - is ``QmpReplyError``. The message
    itself is kept as ``raw`` (what ``qmp:NAME`` hooks read)."""
    msg = parse_reply(wire.EventMessage, "event", message)
    if (why := _unpublishable(msg.data)) is not None:
        raise QmpReplyError(f"event {msg.event}: {why}")
    ts = msg.timestamp
    qemu_ts = ts.seconds + ts.microseconds / 1e6 if ts and ts.seconds >= 0 else None
    raw = dict(message) if isinstance(message, Mapping) else {}
    return QmpEvent(name=msg.event, data=dict(msg.data), qemu_ts=qemu_ts, raw=raw)


def _unpublishable(data: dict[str, Any]) -> str | None:
    """Why ``data`` cannot be published verbatim, level by level (no recursion)."""
    level: list[object] = [data]
    for depth in range(MAX_EVENT_DEPTH + 1):
        if any(isinstance(v, str) and not v.isascii() and not _encodes(v) for v in level):
            return "data holds a string that is not Unicode text (a lone surrogate)"
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return None
        if depth == MAX_EVENT_DEPTH:
            return f"data nested deeper than {MAX_EVENT_DEPTH} levels"
        level = [child for v in containers
                 for child in ((*v, *v.values()) if isinstance(v, dict) else v)]
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


_RUN_STATE: dict[str, RunStateEvent] = {e: e for e in get_args(RunStateEvent)}
_TOPOLOGY: dict[str, TopologyEvent] = {e: e for e in get_args(TopologyEvent)}


def observation_from(event: QmpEvent) -> EventObservation:
    """What one event tells the daemon (qapi/migration.json, qapi/vfio.json,
    qapi/run-state.json, qapi/qdev.json). An event without the fields its kind must
    carry is an ``OtherEvent``, except ``MIGRATION``, whose status is then None."""
    name, data = event.name, event.data
    if name == "MIGRATION":
        status = data.get("status")
        return MigrationStatusSeen(status if isinstance(status, str) else None)
    if name == "MIGRATION_PASS":
        number = data.get("pass")
        return MigrationPassSeen(number) if isinstance(number, int) else OtherEvent(name)
    if name == "VFIO_MIGRATION":
        device = data.get("qom-path") or data.get("device-id")
        state = data.get("device-state")
        if isinstance(device, str) and isinstance(state, str):
            return DeviceStateSeen(device, state)
        return OtherEvent(name)
    if (run_state := _RUN_STATE.get(name)) is not None:
        return RunStateChanged(run_state)
    if (topology := _TOPOLOGY.get(name)) is not None:
        return TopologyChanged(topology)
    return OtherEvent(name)
