"""Availability and the daemon's own state -> messages (pure core).

Stage: telemetry. ``<prefix>/<host>/status`` (birth and last will), ``daemon``,
``vm/<vm>/status`` with its four values, ``vm/<vm>/error`` and the empty retained
message that clears a topic. It must not decide when a VM is online (the daemon
does) nor do I/O.
"""

from __future__ import annotations

from typing import Literal

from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import json_message, vm_message
from qmpdirty.telemetry.topics import TopicKind, Topics

#: The values of ``vm/<vm>/status`` (plain text).
VmStatus = Literal["online", "offline", "unresponsive", "error"]


def host_status(topics: Topics, online: bool) -> Outgoing:
    """``<prefix>/<host>/status``: ``online``/``offline`` (also the last will)."""
    kind = TopicKind.HOST_STATUS
    body = b"online" if online else b"offline"
    return Outgoing(topics.host_topic(kind), body, kind.qos, kind.retain, is_json=False,
                    kind=kind)


def vm_status(topics: Topics, vm: str, online: bool) -> Outgoing:
    """``vm/<vm>/status``: whether the daemon has a QMP session to the VM."""
    return vm_state(topics, vm, "online" if online else "offline")


def vm_state(topics: Topics, vm: str, state: VmStatus) -> Outgoing:
    """``vm/<vm>/status``: ``online``, ``offline``, ``unresponsive`` (QEMU stopped
    answering: frozen or overloaded; the session is kept) or ``error`` (the peer broke
    the protocol; the reason is on ``vm/<vm>/error``)."""
    kind = TopicKind.VM_STATUS
    return Outgoing(topics.vm_topic(vm, kind), state.encode(), kind.qos, kind.retain,
                    is_json=False, vm=vm, kind=kind)


def vm_error(stamp: VmStamp, reason: str, qmp: str) -> Outgoing:
    """``vm/<vm>/error`` (retained): why the status is ``error``."""
    model = schema.VmErrorPayload(**stamp.common(), reason=reason, qmp=qmp)
    return vm_message(stamp, TopicKind.ERROR, model)


def cleared(topics: Topics, vm: str, kind: TopicKind) -> Outgoing:
    """An empty retained message: removes a retained topic from the broker."""
    return Outgoing(topics.vm_topic(vm, kind), b"", kind.qos, True, is_json=False, vm=vm,
                    kind=kind)


def daemon_state(
    topics: Topics, seq: int, ts: float, *, version: str, started_ts: float, vms_online: int,
    vms_known: int, outbox: schema.OutboxStats, qmp_events: schema.QmpEventStats,
    mqtt_connects: int,
) -> Outgoing:
    """``<prefix>/<host>/daemon``: the daemon's own counters."""
    model = schema.DaemonPayload(
        ts=ts, host=topics.host, seq=seq, version=version, started_ts=started_ts,
        vms_online=vms_online, vms_known=vms_known, outbox=outbox, qmp_events=qmp_events,
        mqtt_connects=mqtt_connects,
    )
    return json_message(topics.host_topic(TopicKind.DAEMON), TopicKind.DAEMON, model)
