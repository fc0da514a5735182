"""A payload model -> an ``Outgoing`` message (pure core).

Stage: telemetry. The one place a payload model becomes bytes: the topic comes from
``Topics``, QoS and retain from the ``TopicKind`` (design.md § MQTT contract). It must
not decide what a payload says, nor do I/O.
"""

from __future__ import annotations

from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.topics import TopicKind


def json_message(
    topic: str, kind: TopicKind, model: schema.Payload, expiry_s: int | None = None,
    vm: str = "",
) -> Outgoing:
    """``model`` as JSON (wire names: ``schema``, ``pass``) on ``topic`` (about ``vm``)."""
    body = model.model_dump_json(by_alias=True).encode()
    return Outgoing(topic, body, kind.qos, kind.retain, True, expiry_s, vm, kind=kind,
                    model=model)


def vm_message(
    stamp: VmStamp, kind: TopicKind, model: schema.Payload, event: str | None = None,
    expiry_s: int | None = None,
) -> Outgoing:
    """``model`` on the stamp's VM topic of ``kind`` (``event/<EVENT>`` with ``event``)."""
    return json_message(stamp.topics.vm_topic(stamp.vm, kind, event), kind, model, expiry_s,
                        stamp.vm)
