"""A rendered ``Outgoing`` carries its ``TopicKind`` and the payload model its bytes are
the JSON of, and ``telemetry.metrics`` takes that model rather than parsing the bytes;
a ghost-clearing copy for another topic carries no kind."""

from __future__ import annotations

import dataclasses

from qmpdirty.sinks.outbox import Outbox
from qmpdirty.telemetry import render
from qmpdirty.telemetry.ghosts import forget_messages
from qmpdirty.telemetry.metrics import MetricsState
from qmpdirty.telemetry.topics import TopicKind
from tests.support import metrics_payloads as P


def test_a_rendered_message_carries_its_kind_and_the_model_of_its_bytes() -> None:
    for msg in P.ALL:
        assert msg.kind is not None
        if msg.is_json:
            assert msg.model is not None
            assert msg.model.model_dump_json(by_alias=True).encode() == msg.payload
    assert P.INFO.kind is TopicKind.INFO and P.DAEMON.kind is TopicKind.DAEMON
    assert render.cleared(P.TOPICS, P.VM, TopicKind.INFO).kind is TopicKind.INFO


def test_kind_and_model_do_not_count_for_equality() -> None:
    assert dataclasses.replace(P.INFO, kind=None, model=None) == P.INFO


def test_metrics_take_the_model_not_the_bytes() -> None:
    typed, garbled = MetricsState(P.TOPICS), MetricsState(P.TOPICS)
    for msg in P.ALL:
        typed.ingest(msg)
        garbled.ingest(dataclasses.replace(msg, payload=b"x") if msg.is_json else msg)
    assert garbled.samples() == typed.samples() != []


def test_a_message_built_by_hand_is_read_from_its_topic_and_bytes() -> None:
    typed, raw = MetricsState(P.TOPICS), MetricsState(P.TOPICS)
    for msg in P.ALL:
        typed.ingest(msg)
        raw.ingest(dataclasses.replace(msg, kind=None, model=None))
    assert raw.samples() == typed.samples()


def test_a_found_topic_cleared_by_a_copy_does_not_forget_the_vm() -> None:
    found = {f"qmpdirty/kvm01/vm/{P.VM}/legacy"}
    copy, *_ = forget_messages(P.TOPICS, P.VM, None, found)
    assert (copy.topic, copy.kind) == (next(iter(found)), None)
    s = MetricsState(P.TOPICS)
    for msg in [*P.ALL, copy]:
        s.ingest(msg)
    assert P.VM in s.vms


def test_the_outbox_keeps_the_bytes_not_the_model() -> None:
    """A full outbox (and the retained state kept for every reconnect) holds bytes
    only: a thousand VMs' models would double what it keeps."""
    box = Outbox(capacity=10)
    for msg in P.ALL:
        box.put(msg)
    taken = [t.msg for t in iter(box.take, None)]
    assert taken and all(m.model is None for m in taken)
    assert all(m.model is None for m in box.retained.values())
    assert {m.payload for m in taken} <= {m.payload for m in P.ALL}
