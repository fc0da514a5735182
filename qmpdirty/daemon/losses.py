"""QMP events the daemon could not publish: counted per VM, summarised in the log (shell).

Two kinds, by the VM's topic name, for the daemon's whole run (the ``daemon`` topic
shows them, ``telemetry.schema.QmpEventStats``):

* ``dropped``: the VM's bounded event queue (``qmp.event_queue_size``) was full, so
  its oldest event made room;
* ``unreadable``: the peer sent an event that cannot be read or published - JSON
  beyond Python's reader (an integer of more than 4,300 digits, nesting past the
  recursion limit), not an event's shape, or ``data`` nested deeper than
  ``translate.MAX_EVENT_DEPTH`` - and it was dropped; the session carries on.

Each kind is logged through one ``Tally`` for the whole daemon: the first at once,
then at most one line per ``SUMMARY_INTERVAL_S`` however many VMs misbehave (``flush``
on a timer logs what is left). Must not: log per event, or forget a VM's count while
the daemon runs.
"""

from __future__ import annotations

import logging

from qmpdirty.daemon.tally import Tally
from qmpdirty.telemetry.schema import QmpEventStats

log = logging.getLogger(__name__)

#: How often each kind is summarised in the log, at most.
SUMMARY_INTERVAL_S = 10.0


class EventLosses:
    """The counts, and the two log summaries."""

    def __init__(self, interval_s: float = SUMMARY_INTERVAL_S) -> None:
        self.dropped_by_vm: dict[str, int] = {}
        self.unreadable_by_vm: dict[str, int] = {}
        self._dropped = Tally(log, "QMP event queue full, oldest events dropped", interval_s)
        self._unreadable = Tally(log, "unreadable QMP events dropped", interval_s)

    @property
    def totals(self) -> tuple[int, int]:
        """(dropped, unreadable), ever: changes publish the ``daemon`` topic."""
        return self._dropped.total, self._unreadable.total

    def dropped(self, vm: str, count: int) -> None:
        """``count`` more of ``vm``'s events fell out of its full queue."""
        self.dropped_by_vm[vm] = self.dropped_by_vm.get(vm, 0) + count
        self._dropped.note(f"VM {vm}: {self.dropped_by_vm[vm]} so far", count)

    def unreadable(self, vm: str, reason: str) -> None:
        """One of ``vm``'s events could not be read or published: ``reason``."""
        self.unreadable_by_vm[vm] = self.unreadable_by_vm.get(vm, 0) + 1
        self._unreadable.note(f"VM {vm}: {reason}")

    def flush(self) -> None:
        """Log what was counted since the last line, once the interval has passed."""
        self._dropped.flush_due()
        self._unreadable.flush_due()

    def stats(self) -> QmpEventStats:
        return QmpEventStats(
            dropped_total=self._dropped.total,
            dropped_by_vm=dict(sorted(self.dropped_by_vm.items())),
            unreadable_total=self._unreadable.total,
            unreadable_by_vm=dict(sorted(self.unreadable_by_vm.items())))
