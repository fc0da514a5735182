"""No ghosts: the retained state of a VM that is gone is cleared (shell).

A VM is *gone* from the moment its last QMP session ended (``Context.release``), or,
for a VM the daemon knows only from the broker, from the moment it read that. Once
gone for ``[daemon] forget_after_s`` (0 = never) it is *forgotten*: the empty retained
messages of ``telemetry.ghosts`` go out (Home Assistant's discovery configs first,
when enabled; ``status`` last) and its ``VmRecord`` is dropped. A session under the
same name before then (``Context.claim``) keeps it. ``Forgetting.run`` owns two named
tasks:

* ``forget-recall``, once at start: reads what the broker retains under
  ``<prefix>/<host>/vm/#`` with its own short-lived client (``sinks.retained``; the
  sink's connection is not touched), bounded by ``SCAN_TIMEOUT_S`` and ``SCAN_LIMIT``
  topics, retried with backoff while the broker cannot be reached. Every VM named
  there that has no record yet is adopted as gone: ``offline`` is published at once
  unless its retained ``status`` is ``offline`` or ``error`` already (its QEMU died
  while the daemon was down: it must not stay ``online``). A VM whose session came up
  first has a record and is left alone, so ``offline`` never follows its ``online``.
  It runs beside the start and delays nothing.
* ``forget-sweep``: forgets every record that is due, then sleeps until the next one
  is (at most ``forget_after_s``: a record released meanwhile is due later than that).

A failure here is logged and ends forgetting only; the VMs are unaffected. Must not
forget a VM that has a session, nor publish other than through ``VmPublisher``.
"""

from __future__ import annotations

import asyncio
import logging

from qmpdirty.daemon.vm import Context, VmPublisher, VmRecord
from qmpdirty.errors import SinkError
from qmpdirty.sinks.retained import scan_retained
from qmpdirty.telemetry.ghosts import RememberedVm, forget_messages, remembered
from qmpdirty.telemetry.topics import TopicKind

log = logging.getLogger(__name__)

#: The start-up read of the host's retained VM subtree: time limit and topic cap.
SCAN_TIMEOUT_S = 10.0
SCAN_LIMIT = 50_000
#: Longest wait between attempts to read it while the broker cannot be reached.
RETRY_MAX_S = 60.0
#: The sweep never wakes more often than this.
MIN_SLEEP_S = 0.05


class Forgetting:
    """Adopts the VMs the broker remembers at start; forgets the VMs gone for good."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._found: dict[str, frozenset[str]] = {}  # retained topics seen at start, by VM

    @property
    def after_s(self) -> float:
        return self.ctx.cfg.daemon.forget_after_s

    async def run(self) -> None:
        """Recall once, sweep until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._recall(), name="forget-recall")
                if self.after_s > 0:
                    tg.create_task(self._sweep(), name="forget-sweep")
        except* Exception:
            log.exception("forgetting failed: the state of gone VMs is no longer cleared")

    async def _recall(self) -> None:
        """Read the host's retained VM subtree (retrying) and adopt what it names."""
        topics, delay = self.ctx.topics, 1.0
        while True:
            try:
                scan = await scan_retained(
                    self.ctx.cfg.mqtt, topics.vm_filter(),
                    payloads_of=topics.vm_topic("+", TopicKind.VM_STATUS),
                    timeout_s=SCAN_TIMEOUT_S, limit=SCAN_LIMIT)
                break
            except SinkError as exc:
                log.log(logging.WARNING if delay == 1.0 else logging.DEBUG,
                        "cannot read the retained VM state of this host (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        if not scan.complete:
            log.warning("read %d retained topics of this host's VMs, not all of them "
                        "(limit %d, %gs): VMs named only in the rest are not handled",
                        len(scan.found), SCAN_LIMIT, SCAN_TIMEOUT_S)
        self.adopt(remembered(topics, scan.found))

    def adopt(self, found: dict[str, RememberedVm]) -> list[str]:
        """Take the VMs the broker remembers: those without a record are gone from now
        on (``offline`` is published for a stale ``status``). Returns their names."""
        adopted = []
        for name, vm in found.items():
            self._found[name] = vm.topics
            if name in self.ctx.vms:  # a session came up first: its record decides
                continue
            record = self.ctx.adopt(name, vm.state)
            if vm.stale:
                VmPublisher(self.ctx, record).state(record.state)
            adopted.append(name)
        if adopted:
            log.info("%d VMs have retained state but no QMP session: %s%s%s", len(adopted),
                     ", ".join(adopted[:10]), ", ..." if len(adopted) > 10 else "",
                     f" (forgotten in {self.after_s:g}s unless one comes up)"
                     if self.after_s > 0 else "")
        return adopted

    async def _sweep(self) -> None:
        while True:
            wait = self.sweep()
            await asyncio.sleep(max(MIN_SLEEP_S, min(wait, self.after_s)))

    def sweep(self) -> float:
        """Forget every VM that is due; return the seconds until the next one is."""
        now, after = self.ctx.monotonic(), self.after_s
        wait = after
        for vm in list(self.ctx.vms.values()):
            if vm.owner is not None or vm.released_at is None:
                continue
            left = vm.released_at + after - now
            if left <= 0:
                self.forget(vm, now - vm.released_at)
            else:
                wait = min(wait, left)
        return wait

    def forget(self, vm: VmRecord, gone_s: float) -> None:
        """Clear every retained topic of ``vm`` and drop its record."""
        ha = self.ctx.cfg.homeassistant
        out = VmPublisher(self.ctx, vm)
        for msg in forget_messages(self.ctx.topics, vm.name,
                                   ha.discovery_prefix if ha.enabled else None,
                                   self._found.pop(vm.name, ())):
            out.publish(msg)
        self.ctx.forget(vm)
        log.info("VM %s forgotten: no QMP session for %.0fs; its retained topics are "
                 "cleared", vm.name, gone_s)
