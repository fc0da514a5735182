"""Facts and decisions -> MQTT messages (pure core).

Stage: telemetry. One module per subject, each calling the payload models of
``telemetry.schema`` with keywords (so mypy checks every key) and returning an
``Outgoing`` (``telemetry.message``):

* ``envelope`` — a payload model -> bytes on its topic, QoS and retain from the kind;
* ``status``   — host and VM availability, ``daemon``, ``error``, clearing a topic;
* ``vm``       — ``info``, ``event/<EVENT>``, ``dirty_rate``, ``hook``;
* ``migrations`` — ``migration``, ``migration/pass``, ``migration/summary``;
* ``vfio``     — ``tracking`` and ``blockers``;
* ``forecast`` — ``forecast`` and the forecast inside ``migration``.

Every function takes values plus ``seq`` and ``ts`` (the shell owns counters and the
clock). Nothing here decides, logs or does I/O. This package re-exports the
functions the daemon calls as ``render.<name>``.
"""

from __future__ import annotations

from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.render.migrations import migration, pass_record, summary
from qmpdirty.telemetry.render.status import (
    VmStatus,
    cleared,
    daemon_state,
    host_status,
    vm_error,
    vm_state,
    vm_status,
)
from qmpdirty.telemetry.render.vm import (
    dirty_rate_during_migration,
    dirty_rate_measured,
    event,
    hook_result,
    info,
    info_payload,
)

__all__ = [
    "Outgoing",
    "VmStamp",
    "VmStatus",
    "cleared",
    "daemon_state",
    "dirty_rate_during_migration",
    "dirty_rate_measured",
    "event",
    "hook_result",
    "host_status",
    "info",
    "info_payload",
    "migration",
    "pass_record",
    "summary",
    "vm_error",
    "vm_message",
    "vm_state",
    "vm_status",
]
