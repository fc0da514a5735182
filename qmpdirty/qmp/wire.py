"""Models of the QMP replies and events qmpdirty reads (pure core, boundary validation).

Stage: translate (the boundary). The one home of reply models: ``translate`` and
``topology/replies`` validate with these and nothing else. Must not do I/O or turn
replies into facts (that is ``translate`` / ``topology/replies``).

Shapes follow QEMU's QAPI schema (qapi/*.json). Unknown fields are ignored because
newer QEMUs add them; missing optional fields are None. ``qemu.qmp`` types every
reply as ``object``: nothing from QEMU is used before it passed one of these models.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: QAPI's integers are at most 64 bits; anything larger is a broken peer, and would
#: overflow later float arithmetic.
Int = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]
#: A count, size, time or rate: negative is impossible (QAPI ``size``/``uint64``, or an
#: ``int`` QEMU only ever fills with a count), so a peer that sends one is broken and its
#: reply is rejected instead of published (``base-memory: -1`` became ``ram_bytes: -1``).
Count = Annotated[int, Field(ge=0, le=2**64 - 1)]


class _Wire(BaseModel):
    # strict: QMP is JSON with exact types; `true` is no number, "3" no integer
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, strict=True)


class VersionTriple(_Wire):
    major: Int
    minor: Int
    micro: Int


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

    cpu_index: Int = Field(alias="cpu-index")


class MemorySizeSummary(_Wire):
    """``query-memory-size-summary``."""

    base_memory: Count = Field(alias="base-memory")
    plugged_memory: Count | None = Field(default=None, alias="plugged-memory")


class MigrationCapabilityStatus(_Wire):
    """One entry of ``query-migrate-capabilities``."""

    capability: str
    state: bool


class RamStats(_Wire):
    """``MigrationInfo.ram`` (``mbps`` is megabits/s, ``dirty-pages-rate`` pages/s)."""

    transferred: Count = 0
    remaining: Count = 0
    total: Count = 0
    mbps: float = 0.0
    dirty_pages_rate: Count = Field(default=0, alias="dirty-pages-rate")
    page_size: Count | None = Field(default=None, alias="page-size")
    dirty_sync_count: Count | None = Field(default=None, alias="dirty-sync-count")
    normal: Count = 0  # pages sent with content
    duplicate: Count = 0  # zero pages (almost free on the wire)


class VfioStats(_Wire):
    """``MigrationInfo.vfio`` (QEMU >= 5.2)."""

    transferred: Count = 0


class MigrationInfo(_Wire):
    """``query-migrate``; every member is optional, ``status`` absent before any migration."""

    status: str | None = None
    ram: RamStats | None = None
    vfio: VfioStats | None = None
    total_time: Count | None = Field(default=None, alias="total-time")
    setup_time: Count | None = Field(default=None, alias="setup-time")
    downtime: Count | None = None
    expected_downtime: Count | None = Field(default=None, alias="expected-downtime")
    cpu_throttle_percentage: Count | None = Field(default=None, alias="cpu-throttle-percentage")
    error_desc: str | None = Field(default=None, alias="error-desc")
    blocked_reasons: list[str] = Field(default_factory=list, alias="blocked-reasons")


class MigrationParameters(_Wire):
    """``query-migrate-parameters`` (the members the forecast reads)."""

    downtime_limit: Count | None = Field(default=None, alias="downtime-limit")  # ms
    max_bandwidth: Count | None = Field(default=None, alias="max-bandwidth")  # bytes/s
    avail_switchover_bandwidth: Count | None = Field(default=None,
                                                   alias="avail-switchover-bandwidth")
    vcpu_dirty_limit: Count | None = Field(default=None, alias="vcpu-dirty-limit")  # MB/s


class DirtyRateVcpu(_Wire):
    id: Int
    dirty_rate: Count = Field(alias="dirty-rate")


class DirtyRateInfo(_Wire):
    """``query-dirty-rate``: ``dirty-rate`` (MiB/s) only once ``status`` is ``measured``."""

    status: str
    dirty_rate: Count | None = Field(default=None, alias="dirty-rate")
    start_time: Int | None = Field(default=None, alias="start-time")
    calc_time: Count | None = Field(default=None, alias="calc-time")
    calc_time_unit: str = Field(default="second", alias="calc-time-unit")
    sample_pages: Count | None = Field(default=None, alias="sample-pages")
    mode: str = "page-sampling"
    vcpu_dirty_rate: list[DirtyRateVcpu] | None = Field(default=None, alias="vcpu-dirty-rate")


class GuestStats(_Wire):
    """``qom-get`` of a virtio-balloon's ``guest-stats`` (hw/virtio/virtio-balloon.c
    ``balloon_stats_get_all``): every stat reads 2^64-1 and ``last-update`` 0 until the
    guest's driver has reported, which it does only once ``guest-stats-polling-interval``
    is set (libvirt: ``<memballoon><stats period=.../>``)."""

    stats: dict[str, Count]
    last_update: Count = Field(alias="last-update")  # epoch seconds


# --- QOM, PCI and memory devices (the VFIO topology, ``qmp/topology``) ---------------------


class ObjectPropertyInfo(_Wire):
    """One ``qom-list`` entry; a child has ``type`` ``child<TYPE>``."""

    name: str
    type: str


class ObjectPropertyValue(_Wire):
    """QEMU 10.1 ``qom-list-get``: ``value`` is absent when the property cannot be read."""

    name: str
    type: str
    value: Any = None


class ObjectPropertiesValues(_Wire):
    """One object's entry in the ``qom-list-get`` reply."""

    properties: list[ObjectPropertyValue]


class PciMemoryRegion(_Wire):
    bar: Int
    type: str
    address: Int
    size: Int
    prefetch: bool = False
    mem_type_64: bool = False


class PciBridgeInfo(_Wire):
    devices: list[PciDeviceInfo] = Field(default_factory=list)


class PciDeviceInfo(_Wire):
    bus: Int
    slot: Int
    function: Int
    qdev_id: str
    regions: list[PciMemoryRegion]
    pci_bridge: PciBridgeInfo | None = None


PciBridgeInfo.model_rebuild()


class PciInfo(_Wire):
    """One bus of ``query-pci``; an unassigned BAR has ``address`` -1."""

    bus: Int
    devices: list[PciDeviceInfo]


class MemoryDeviceData(_Wire):
    """``data`` of every ``MemoryDeviceInfo`` kind (qapi/machine.json 10.0): dimm and
    nvdimm have ``addr``; virtio-pmem, virtio-mem, sgx-epc ``memaddr``; hv-balloon an
    optional ``memaddr``/``memdev`` and no ``size``; virtio-mem, hv-balloon ``max-size``."""

    id: str | None = None
    addr: Int | None = None
    memaddr: Int | None = None
    size: Int | None = None
    max_size: Int | None = Field(default=None, alias="max-size")
    memdev: str | None = None


class MemoryDeviceInfo(_Wire):
    """One entry of ``query-memory-devices``."""

    type: str
    data: MemoryDeviceData


class EventTimestamp(_Wire):
    seconds: Int
    microseconds: Int


class EventMessage(_Wire):
    """A QMP event message: ``{"event", "data"?, "timestamp"}``."""

    event: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: EventTimestamp | None = None


# --- messages Python's json cannot read ---------------------------------------------------

#: A JSON string (escapes included), a run of opening or of closing brackets, ``:``, ``,``.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{\[]+|[}\]]+|[:,]', re.S)


@dataclass(frozen=True, slots=True)
class MessageHead:
    """What the top level of a QMP message says about it: its ``event`` name (None: no
    ``event`` member; empty: one that is not a string) and its ``id`` (None: none, or
    not a string)."""

    event: str | None
    id: str | None


def head_of(raw: bytes) -> MessageHead:
    """The ``event`` and ``id`` members of a message that is valid JSON but beyond what
    Python's ``json`` reads (an integer of more than 4,300 digits, nesting deeper than
    the interpreter's recursion limit), found without reading the values: the scan
    keeps a depth count, so it never recurses, and looks only at top-level members."""
    depth, key, member_start = 0, None, False
    found: dict[str, str | None] = {}
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token[0] in b"{[":
            if depth == 1 and key is not None:
                found.setdefault(key, None)  # a container value: present, not a string
                key = None
            depth += len(token)
            member_start = depth == 1
        elif token[0] in b"}]":
            depth -= len(token)
        elif depth != 1:
            continue
        elif token == b",":
            if key is not None:
                found.setdefault(key, None)  # a number, true, false or null
            key, member_start = None, True
        elif token == b":":
            member_start = False
        elif member_start:  # a string where a member's name goes
            key, member_start = _string(token), False
        elif key is not None:  # a string value
            found.setdefault(key, _string(token))
            key = None
    if key is not None:
        found.setdefault(key, None)
    event = (found["event"] or "") if "event" in found else None
    return MessageHead(event=event, id=found.get("id"))


def _string(token: bytes) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""
