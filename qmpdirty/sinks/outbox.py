"""The outbox: what waits for the broker, bounded, fair between VMs, each VM in order.

Stage: sink data structure (no I/O). Messages wait in one *lane* per VM
(``Outgoing.vm``; the daemon's own topics have the lane ``""``). In a lane:
* retained state (``info``, ``migration``, ...): only the latest value per topic
  matters, so it is kept in ``retained`` and the topic is merely *pending*, at the
  place of its latest update (intermediate values may be skipped, never reordered);
* non-retained records (``event/*``, ``migration/pass``): kept in arrival order.

**Order.** A lane gives out its messages in the order they were put, which is the
VM's ``seq`` order (the daemon stamps and queues a payload in one step). A message
given back after a failed publish, and every retained topic marked again after a
reconnect, returns to *its own* place, never to the front: so for each VM nothing new
ever follows a higher ``seq``; only copies of messages sent before may.

**Fairness.** ``take`` serves the lanes round-robin, one message at a time: a VM that
floods waits behind its own messages only.

**Bound.** At most ``capacity`` records in all (retained state is one value per
topic). A record that does not fit evicts the oldest record of its own lane when that
lane holds its fair share (``capacity`` / lanes holding records) or more, else the
oldest record of the longest lane: a flood loses its own records, never a quiet VM's
(unless a quiet VM alone outgrows its share). Every drop is counted, in total and by VM.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, replace

from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing


@dataclass(frozen=True, slots=True)
class Taken:
    """A message taken from the outbox, with its place (to give it back to)."""

    place: int
    msg: Outgoing


class _Lane:
    """One VM's waiting messages: records, and pending retained topics (place order)."""

    __slots__ = ("pending", "records", "scheduled")

    def __init__(self) -> None:
        self.records: deque[tuple[int, Outgoing]] = deque()
        self.pending: dict[str, int] = {}  # topic -> place, in ascending place order
        self.scheduled = False  # in the outbox's round-robin

    def __len__(self) -> int:
        return len(self.records) + len(self.pending)

    def pend(self, topic: str, place: int) -> None:
        """Mark ``topic`` pending at ``place`` (not pending yet), keeping place order."""
        if not self.pending or place > next(reversed(self.pending.values())):
            self.pending[topic] = place
        else:
            self.pending = dict(sorted([*self.pending.items(), (topic, place)],
                                       key=lambda item: item[1]))

    def insert(self, place: int, msg: Outgoing) -> None:
        """Put a record back at its place (usually the front)."""
        if not self.records or place < self.records[0][0]:
            self.records.appendleft((place, msg))
        else:
            self.records.insert(bisect.bisect(self.records, place, key=lambda r: r[0]),
                                (place, msg))


class Outbox:
    """Per-VM lanes of records and pending retained topics, served round-robin."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.retained: dict[str, Outgoing] = {}
        self.dropped_total = 0
        self.dropped_by_vm: dict[str, int] = {}
        self._places: dict[str, int] = {}  # retained topic -> place of its latest value
        self._lanes: dict[str, _Lane] = {}
        self._turns: deque[str] = deque()  # lanes with messages waiting, round-robin
        self._order = 0
        self._records = 0
        self._pending = 0
        self._holders = 0  # lanes holding records

    def __len__(self) -> int:
        return self._records + self._pending

    @property
    def queued_records(self) -> int:
        """Non-retained messages waiting."""
        return self._records

    def stats(self) -> schema.OutboxStats:
        """What ``<prefix>/<host>/daemon`` says about the outbox."""
        return schema.OutboxStats(capacity=self.capacity, queued=self._records,
                                  dropped_total=self.dropped_total,
                                  dropped_by_vm=dict(sorted(self.dropped_by_vm.items())))

    def put(self, msg: Outgoing) -> int:
        """Queue ``msg``, bytes only (not its model); how many records overflow dropped."""
        msg = replace(msg, model=None) if msg.model is not None else msg
        self._order += 1
        lane = self._lane(msg.vm)
        if msg.retain:
            self.retained[msg.topic] = msg
            self._places[msg.topic] = self._order
            if lane.pending.pop(msg.topic, None) is None:
                self._pending += 1
            lane.pending[msg.topic] = self._order  # the highest place: order stays ascending
            return 0
        dropped = self._make_room(msg.vm) if self._records >= self.capacity else 0
        self._add_record(lane, self._order, msg)
        return dropped

    def take(self) -> Taken | None:
        """The next lane's first message, removed from the outbox; None when empty."""
        while self._turns:
            vm = self._turns.popleft()
            lane = self._lanes[vm]
            taken = self._first(lane)
            if len(lane):
                self._turns.append(vm)
            else:  # an emptied lane is forgotten: lanes come and go with VMs
                del self._lanes[vm]
            if taken is not None:
                return taken
        return None

    def give_back(self, taken: Taken) -> int:
        """Return a message whose publish failed to its own place (at-least-once).

        A retained value that a newer one has replaced meanwhile is not given back (the
        newer one is pending or was sent). A record that no longer fits makes room like
        a new one (dropping this one when its lane holds its share: it is the lane's
        oldest); returns how many records were dropped (0 or 1).
        """
        msg, place = taken.msg, taken.place
        lane = self._lane(msg.vm)
        if msg.retain:
            if msg.topic not in lane.pending and self.retained.get(msg.topic) is msg:
                lane.pend(msg.topic, place)
                self._pending += 1
            return 0
        dropped = 0
        if self._records >= self.capacity:
            if self._over_share(msg.vm):
                self._count_drop(msg.vm)
                return 1
            dropped = self._make_room(msg.vm)
        self._add_record(lane, place, msg, insert=True)
        return dropped

    def mark_all_retained(self) -> None:
        """After a reconnect: every retained topic goes out again, each at its place."""
        for topic, msg in self.retained.items():
            lane = self._lane(msg.vm)
            if topic not in lane.pending:
                lane.pend(topic, self._places[topic])
                self._pending += 1

    # --- bookkeeping -----------------------------------------------------------------

    def _lane(self, vm: str) -> _Lane:
        """``vm``'s lane, in the round-robin (a message is about to join it)."""
        lane = self._lanes.get(vm)
        if lane is None:
            lane = self._lanes[vm] = _Lane()
        if not lane.scheduled:
            lane.scheduled = True
            self._turns.append(vm)
        return lane

    def _first(self, lane: _Lane) -> Taken | None:
        """Remove and return the lane's earliest message (retained or record)."""
        topic = next(iter(lane.pending), None)
        if topic is not None and (not lane.records or lane.pending[topic] < lane.records[0][0]):
            self._pending -= 1
            return Taken(lane.pending.pop(topic), self.retained[topic])
        if not lane.records:  # emptied by overflow while waiting for its turn
            return None
        place, msg = lane.records.popleft()
        self._record_left(lane)
        return Taken(place, msg)

    def _add_record(self, lane: _Lane, place: int, msg: Outgoing, insert: bool = False) -> None:
        if not lane.records:
            self._holders += 1
        if insert:
            lane.insert(place, msg)
        else:
            lane.records.append((place, msg))
        self._records += 1

    def _record_left(self, lane: _Lane) -> None:
        self._records -= 1
        if not lane.records:
            self._holders -= 1

    def _over_share(self, vm: str) -> bool:
        """Whether ``vm``'s lane holds its fair share of the records or more."""
        lane = self._lanes.get(vm)
        held = len(lane.records) if lane is not None else 0
        holders = self._holders + (0 if held else 1)
        return held * holders >= self.capacity

    def _make_room(self, vm: str) -> int:
        """Drop one record for a record of ``vm``: its own oldest when it holds its share,
        else the oldest of the longest lane. Returns 1 (dropped)."""
        victim = vm if self._over_share(vm) else max(
            self._lanes, key=lambda k: len(self._lanes[k].records))
        lane = self._lanes[victim]
        lane.records.popleft()
        self._record_left(lane)
        self._count_drop(victim)
        return 1

    def _count_drop(self, vm: str) -> None:
        self.dropped_total += 1
        self.dropped_by_vm[vm] = self.dropped_by_vm.get(vm, 0) + 1
