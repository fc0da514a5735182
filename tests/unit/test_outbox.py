"""The outbox (sinks/outbox.py): per-VM lanes in seq order, round-robin, fair overflow."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.sinks.outbox import Outbox, Taken
from qmpdirty.telemetry.render import Outgoing

_ids = itertools.count()


def record(vm: str = "a") -> Outgoing:
    return Outgoing(f"p/h/vm/{vm}/event/X", f"r{next(_ids)}".encode(), 1, False, vm=vm)


def state(topic: str, vm: str = "a") -> Outgoing:
    return Outgoing(f"p/h/vm/{vm}/{topic}", f"s{next(_ids)}".encode(), 1, True, vm=vm)


def drain(box: Outbox) -> list[Outgoing]:
    out = []
    while (taken := box.take()) is not None:
        out.append(taken.msg)
    return out


def take(box: Outbox) -> Taken:
    taken = box.take()
    assert taken is not None
    return taken


# --- one VM: order, latest state, give back, reconnect -------------------------------------


def test_empty_outbox() -> None:
    box = Outbox(3)
    assert box.take() is None
    assert len(box) == box.queued_records == box.dropped_total == 0
    assert box.stats().model_dump() == {"capacity": 3, "queued": 0, "dropped_total": 0,
                                        "dropped_by_vm": {}}


def test_records_come_out_in_order() -> None:
    box = Outbox(10)
    msgs = [record() for _ in range(5)]
    for m in msgs:
        assert box.put(m) == 0
    assert len(box) == 5
    assert drain(box) == msgs
    assert len(box) == 0


def test_overflow_drops_the_oldest_and_counts() -> None:
    box = Outbox(3)
    msgs = [record() for _ in range(5)]
    assert [box.put(m) for m in msgs] == [0, 0, 0, 1, 1]
    assert box.dropped_total == 2 and box.dropped_by_vm == {"a": 2}
    assert box.queued_records == 3
    assert drain(box) == msgs[2:]


def test_retained_keeps_only_the_latest_per_topic() -> None:
    box = Outbox(3)
    old, other, new = state("info"), state("migration"), state("info")
    for m in (old, other, new):
        assert box.put(m) == 0
    assert box.retained == {old.topic: new, other.topic: other}
    assert len(box) == 2
    assert drain(box) == [other, new]  # ``info`` moved to its latest update's place


def test_retained_state_never_overflows_or_counts_as_dropped() -> None:
    box = Outbox(1)
    msgs = [state(f"t{i}") for i in range(50)]
    for m in msgs:
        box.put(m)
    assert box.dropped_total == 0 and box.queued_records == 0
    assert drain(box) == msgs


def test_state_and_records_come_out_in_the_order_they_were_put() -> None:
    box = Outbox(10)
    r1, s1, r2, s2 = record(), state("info"), record(), state("blockers")
    for m in (r1, s1, r2, s2):
        box.put(m)
    assert drain(box) == [r1, s1, r2, s2]


def test_taken_retained_topic_is_not_sent_again_until_marked() -> None:
    box = Outbox(10)
    s = state("info")
    box.put(s)
    assert take(box).msg == s
    assert box.take() is None
    assert box.retained == {s.topic: s}  # still known, for the next reconnect
    box.mark_all_retained()
    assert drain(box) == [s]


def test_reconnect_resends_state_at_its_own_place_not_before_older_records() -> None:
    """Issue 12 item 5: state re-sent first, with its newest seq, made every record queued
    during the outage arrive after a higher seq."""
    box = Outbox(10)
    info = state("info")
    box.put(info)
    assert take(box).msg == info  # sent before the outage
    during = [record(), record()]
    box.put(during[0])
    migration = state("migration")  # updated while the broker is away
    box.put(migration)
    box.put(during[1])
    box.mark_all_retained()  # reconnected
    assert drain(box) == [info, during[0], migration, during[1]]


def test_give_back_record_returns_to_its_place() -> None:
    box = Outbox(10)
    r1, r2 = record(), record()
    box.put(r1)
    box.put(r2)
    taken = take(box)
    assert taken.msg == r1
    assert box.give_back(taken) == 0
    assert drain(box) == [r1, r2]


def test_give_back_of_an_outdated_state_sends_only_the_latest_in_its_place() -> None:
    box = Outbox(10)
    old = state("info")
    box.put(old)
    taken = take(box)
    r1 = record()
    box.put(r1)
    new = state("info")
    box.put(new)  # arrives while ``old`` is being published
    box.give_back(taken)  # publish failed
    assert drain(box) == [r1, new]  # not ``new`` first: r1 has the lower seq


def test_give_back_of_a_state_superseded_by_one_already_sent_is_dropped() -> None:
    box = Outbox(10)
    old = state("info")
    box.put(old)
    first = take(box)
    new = state("info")
    box.put(new)
    assert take(box).msg == new  # acknowledged, say
    box.give_back(first)
    assert drain(box) == []  # ``old`` would overwrite ``new`` on the broker


def test_given_back_records_and_state_keep_their_order() -> None:
    box = Outbox(10)
    msgs = [record(), state("info"), record(), state("migration"), record()]
    for m in msgs:
        box.put(m)
    window = [take(box) for _ in msgs]
    for taken in reversed(window):  # the sink gives back in reverse send order
        box.give_back(taken)
    assert drain(box) == msgs


def test_give_back_on_a_full_outbox_keeps_the_capacity() -> None:
    box = Outbox(3)
    msgs = [record() for _ in range(4)]
    for m in msgs[:3]:
        box.put(m)
    taken = take(box)
    box.put(msgs[3])  # full again
    assert box.give_back(taken) == 1  # the oldest record of the lane: itself
    assert box.queued_records == 3 and box.dropped_total == 1
    assert drain(box) == msgs[1:]


# --- several VMs: round-robin and a fair share ----------------------------------------------


def test_lanes_are_served_round_robin() -> None:
    box = Outbox(100)
    noisy = [record("noisy") for _ in range(6)]
    for m in noisy:
        box.put(m)
    quiet = [record("q1"), record("q2"), state("info", "q1")]
    for m in quiet:
        box.put(m)
    out = drain(box)
    assert out[:3] == [noisy[0], quiet[0], quiet[1]]
    assert out[3:5] == [noisy[1], quiet[2]]
    assert out[5:] == noisy[2:]


def test_a_flood_loses_its_own_records_never_a_quiet_vms() -> None:
    """Issue 12 item 4: one VM's 20,000 events/s evicted the quiet VMs' records."""
    box = Outbox(10)
    quiet = [record(f"q{i}") for i in range(3)]
    for m in quiet:
        box.put(m)
    flood = [record("noisy") for _ in range(1000)]
    for m in flood:
        box.put(m)
    box.put(late := record("q0"))  # a quiet VM's record arriving into a full outbox
    assert box.queued_records == 10
    assert box.dropped_by_vm == {"noisy": 1000 - 6} and box.dropped_total == 994
    out = drain(box)
    assert [m for m in out if m.vm != "noisy"] == [*quiet, late]
    assert [m for m in out if m.vm == "noisy"] == flood[-6:]
    assert box.stats().dropped_by_vm == {"noisy": 994}


def test_a_quiet_vm_over_its_share_loses_its_own_oldest() -> None:
    box = Outbox(4)
    a = [record("a") for _ in range(3)]
    for m in a:
        box.put(m)
    box.put(b := record("b"))
    box.put(a4 := record("a"))  # full: a holds 3 of 4, over its share of 2
    assert box.dropped_by_vm == {"a": 1}
    assert sorted(drain(box), key=lambda m: m.payload) == sorted([*a[1:], b, a4],
                                                                 key=lambda m: m.payload)


@pytest.mark.parametrize("capacity", [1, 2, 10])
def test_dropped_total_is_the_sum_of_put_results(capacity: int) -> None:
    box = Outbox(capacity)
    total = sum(box.put(record(vm)) for vm in itertools.islice(itertools.cycle("abc"), 25))
    assert total == box.dropped_total == sum(box.dropped_by_vm.values()) == 25 - capacity


# --- model-based: random put/take/give_back/mark over three VMs ------------------------------

VMS = ["a", "b", "c"]
TOPICS = ["info", "migration"]


@dataclass
class Model:
    """What the outbox promises, without its bookkeeping."""

    capacity: int
    latest: dict[str, tuple[int, Outgoing]] = field(default_factory=dict)  # topic -> place
    pending: dict[str, set[str]] = field(default_factory=lambda: {v: set() for v in VMS})
    records: dict[str, list[tuple[int, Outgoing]]] = field(
        default_factory=lambda: {v: [] for v in VMS})
    places: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    in_flight: list[Taken] = field(default_factory=list)
    jumped: dict[str, Counter[str]] = field(default_factory=lambda: {v: Counter() for v in VMS})

    def waiting(self, vm: str) -> int:
        return len(self.records[vm]) + len(self.pending[vm])

    def first(self, vm: str) -> tuple[int, Outgoing]:
        candidates = [*self.records[vm], *(self.latest[t] for t in self.pending[vm])]
        return min(candidates, key=lambda c: c[0])

    def victim(self, box: Outbox, vm: str) -> str:
        """A record of ``vm`` did not fit and one was dropped: check whose (before the
        model adds ``vm``'s record), count it, and return it."""
        victim = next(v for v in VMS if box.dropped_by_vm.get(v, 0) != self.dropped[v])
        held = len(self.records[vm])
        holders = sum(1 for v in VMS if self.records[v] or v == vm)
        if held * holders >= self.capacity:
            assert victim == vm, "a VM at its fair share must lose its own records"
        else:
            longest = max(len(r) for r in self.records.values())
            assert len(self.records[victim]) == longest, "the longest lane pays"
        self.dropped[victim] += 1
        return victim

    def drop_oldest(self, vm: str) -> None:
        self.records[vm].remove(min(self.records[vm], key=lambda r: r[0]))


def check_take(box: Outbox, model: Model) -> None:
    taken = box.take()
    busy = [v for v in VMS if model.waiting(v)]
    if taken is None:
        assert not busy, "take() None while messages wait"
        return
    vm = taken.msg.vm
    place, msg = model.first(vm)
    assert (taken.place, taken.msg) == (place, msg), "a lane must give out its earliest message"
    if msg.retain:
        model.pending[vm].discard(msg.topic)
    else:
        model.records[vm].remove((place, msg))
    for other in busy:  # round-robin: no lane is served twice while another waits
        if other != vm:
            model.jumped[other][vm] += 1
            assert model.jumped[other][vm] <= 1, f"{vm} served twice while {other} waited"
    model.jumped[vm].clear()
    model.in_flight.append(taken)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.sampled_from(VMS), st.just("")),
        st.tuples(st.just("state"), st.sampled_from(VMS), st.sampled_from(TOPICS)),
        st.tuples(st.just("take"), st.just(""), st.just("")),
        st.tuples(st.just("give_back"), st.just(""), st.just("")),
        st.tuples(st.just("mark"), st.just(""), st.just("")),
    ),
    max_size=80,
)


def apply(box: Outbox, model: Model, op: str, vm: str, topic: str) -> None:
    """One operation on the outbox and the model, with what it returns checked."""
    full = sum(len(r) for r in model.records.values()) >= model.capacity
    if op == "record":
        model.places += 1
        msg = record(vm)
        assert box.put(msg) == int(full)
        if full:
            model.drop_oldest(model.victim(box, vm))
        model.records[vm].append((model.places, msg))
    elif op == "state":
        model.places += 1
        msg = state(topic, vm)
        assert box.put(msg) == 0
        model.latest[msg.topic] = (model.places, msg)
        model.pending[vm].add(msg.topic)
    elif op == "take":
        check_take(box, model)
    elif op == "give_back" and model.in_flight:
        give_back(box, model, model.in_flight.pop())  # the sink: reverse send order
    elif op == "mark":
        box.mark_all_retained()
        for t, (_, msg) in model.latest.items():
            model.pending[msg.vm].add(t)
        model.in_flight.clear()


def give_back(box: Outbox, model: Model, taken: Taken) -> None:
    msg, owner = taken.msg, taken.msg.vm
    full = sum(len(r) for r in model.records.values()) >= model.capacity
    dropped = box.give_back(taken)
    if msg.retain:
        assert dropped == 0
        if model.latest[msg.topic][1] is msg:
            model.pending[owner].add(msg.topic)
        return
    assert dropped == int(full)
    victim = model.victim(box, owner) if full else None
    if victim == owner:
        return  # the record given back, the oldest of its lane
    if victim is not None:
        model.drop_oldest(victim)
    model.records[owner].append((taken.place, msg))


def check_invariants(box: Outbox, model: Model) -> None:
    for v in VMS:  # a lane that emptied (taken or dropped) waits afresh when it refills
        if not model.waiting(v):
            model.jumped[v].clear()
    assert box.queued_records == sum(len(r) for r in model.records.values()) <= model.capacity
    assert box.dropped_by_vm == {v: n for v, n in model.dropped.items() if n}
    assert box.dropped_total == model.dropped.total()
    assert box.retained == {t: m for t, (_, m) in model.latest.items()}
    assert len(box) == sum(model.waiting(v) for v in VMS)


def run_model(capacity: int, ops: list[tuple[str, str, str]]) -> None:
    box = Outbox(capacity)
    model = Model(capacity)
    for op, vm, topic in ops:
        apply(box, model, op, vm, topic)
        check_invariants(box, model)
    while any(model.waiting(v) for v in VMS):  # the rest comes out, each exactly once
        check_take(box, model)
    assert box.take() is None


@settings(max_examples=400, deadline=None)
@given(capacity=st.integers(1, 6), ops=_ops)
def test_outbox_matches_model(capacity: int, ops: list[tuple[str, str, str]]) -> None:
    run_model(capacity, ops)
