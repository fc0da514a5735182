"""The outbox: what waits for the broker, bounded, with retained state kept whole.

Stage: sink data structure (no I/O). Two kinds of message wait here:
* retained state (``info``, ``migration``, ...): only the latest per topic matters,
  so it is kept in ``retained`` and a topic is merely *marked* pending; after every
  reconnect every retained topic is marked again, so the broker always ends up with
  the current state whatever was lost in between;
* non-retained records (``event/*``, ``migration/pass``): kept in arrival order up
  to ``capacity``; overflow drops the oldest and counts it in ``dropped_total``.
``take`` returns whichever was queued first; a retained topic updated while pending
moves to its latest update's place, so what reaches the broker follows ``seq``
(intermediate states of one topic may be skipped, never reordered).
"""

from __future__ import annotations

from collections import deque

from qmpdirty.telemetry.message import Outgoing

# Queue positions below every normal one: state re-sent after a reconnect goes first,
# then whatever a failed publish gave back, then the queue in arrival order.
_RECONNECTED = -2
_GIVEN_BACK = -1


class Outbox:
    """Bounded FIFO of non-retained messages plus the latest value of each retained topic."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.retained: dict[str, Outgoing] = {}
        self.dropped_total = 0
        self._records: deque[tuple[int, Outgoing]] = deque()
        self._pending: dict[str, int] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._records) + len(self._pending)

    @property
    def queued_records(self) -> int:
        """Non-retained messages waiting."""
        return len(self._records)

    def put(self, msg: Outgoing) -> int:
        """Queue ``msg``; return how many records overflow dropped (0 normally)."""
        self._order += 1
        if msg.retain:
            self.retained[msg.topic] = msg
            self._pending.pop(msg.topic, None)
            self._pending[msg.topic] = self._order  # dict order stays ascending
            return 0
        dropped = 0
        while len(self._records) >= self.capacity:
            self._records.popleft()
            dropped += 1
        self._records.append((self._order, msg))
        self.dropped_total += dropped
        return dropped

    def take(self) -> Outgoing | None:
        """The message that waited longest, removed from the outbox; None when empty."""
        first_topic = next(iter(self._pending), None)
        if first_topic is not None and (
            not self._records or self._pending[first_topic] < self._records[0][0]
        ):
            del self._pending[first_topic]
            return self.retained[first_topic]
        if self._records:
            return self._records.popleft()[1]
        return None

    def give_back(self, msg: Outgoing) -> int:
        """Return a message whose publish failed to the front (at-least-once).

        A full outbox drops the oldest record, which is this one: returns 1 then.
        """
        if msg.retain:
            rest = {t: o for t, o in self._pending.items() if t != msg.topic}
            # first, and never after state re-marked by a reconnect (``take`` compares
            # only the first pending topic with the records, so the order stays ascending)
            first = min(_GIVEN_BACK, next(iter(rest.values()), _GIVEN_BACK))
            self._pending = {msg.topic: first, **rest}
            return 0
        if len(self._records) >= self.capacity:
            self.dropped_total += 1
            return 1
        self._records.appendleft((_GIVEN_BACK, msg))
        return 0

    def mark_all_retained(self) -> None:
        """After a reconnect: every retained topic goes out again, before any record."""
        self._pending = dict.fromkeys(self.retained, _RECONNECTED)
