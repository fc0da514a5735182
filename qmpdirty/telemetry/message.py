"""What the sinks consume: one message for the broker, the port it is handed to, and
the stamp of a VM payload (pure core).

Stage: telemetry; the port type between rendering and the sinks (``sinks/mqtt``,
``sinks/outbox``, ``sinks/prometheus``, ``telemetry/metrics``), the ``Publisher`` port
itself (defined here, the lowest layer every sender and sink imports) and what
``discovery`` returns. Values and types only: this module must not render payloads,
pick topics or do I/O. The shell owns ``seq`` and the clock and hands them in as a
``VmStamp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypedDict

from qmpdirty.telemetry.payload import Payload
from qmpdirty.telemetry.topics import TopicKind, Topics


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the broker. ``expiry_s`` maps to the MQTT v5 expiry property;
    ``vm`` is the VM it is about (``""``: the daemon's own topics), by which the sink
    keeps each VM's messages in order and shares the outbox fairly between VMs.

    ``kind`` and ``model`` are what a renderer made it from (its ``TopicKind``; the
    payload model ``payload`` is the JSON of), so that a sink that reads payloads
    (``telemetry.metrics``) takes the typed value instead of parsing the bytes back.
    None: not made by a renderer (a Home Assistant config, a copy for another topic),
    or no model (plain-text status, an empty retained clear). Neither counts for
    equality: the message on the wire is the rest."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    is_json: bool = True
    expiry_s: int | None = None
    vm: str = ""
    kind: TopicKind | None = field(default=None, compare=False, kw_only=True)
    model: Payload | None = field(default=None, compare=False, repr=False, kw_only=True)


class Publisher(Protocol):
    """The port every message goes to: the MQTT sink, ``/metrics``, the ``Tee`` of
    both, a recorder in tests."""

    def publish(self, msg: Outgoing) -> None:
        """Queue ``msg``; never blocks, never raises."""


class StampFields(TypedDict):
    """The keyword arguments every VM payload model takes from its stamp."""

    ts: float
    host: str
    vm: str
    seq: int


@dataclass(frozen=True, slots=True)
class VmStamp:
    """What every VM payload carries besides its own fields."""

    topics: Topics
    vm: str
    seq: int
    ts: float

    def common(self) -> StampFields:
        """``ts``, ``host``, ``vm`` and ``seq``, to unpack into a payload model's
        constructor (mypy checks every key against the model)."""
        return StampFields(ts=self.ts, host=self.topics.host, vm=self.vm, seq=self.seq)
