"""Hooks: run the operator's executables on daemon events (shell, a sink beside MQTT).

Stage: sink. The daemon calls ``HookRunner.fire_body(kind, vm, body)`` where it
publishes a payload that hooks read as published (a ``PublishedHookKind``),
``fire_online(vm, info)`` and ``fire_offline(vm)`` as a VM's session starts and
ends, and ``fire_qmp(vm, event)`` for every QMP event (the ``qmp:NAME`` hooks it is
due for, ``decisions.migration.hooks_due``, read the message as QEMU sent it); each
only queues (``sinks.hook_queue``: bounded, the oldest run is dropped on overflow,
counted and logged) and returns. ``HookRunner.run()`` is the pool of
``sinks.hook_workers``: ``[hooks] max_concurrent`` workers, owned by the daemon's
TaskGroup, each running one ``[[hook]]`` command at a time (``sinks.hook_process``: a
run ends with the hook's own exit).

``vm-offline`` hooks read a ``VmOfflineInput`` (``sinks.hook_input``) built here, with
the ``info`` payload the VM's ``vm-online`` hooks got. At stop (``stopping``, then
``finish``) they run first, on workers of their own as well, so a backlog of other
hooks cannot keep them from running within the deadline.

This module (with the modules it hands runs to) must not:
* run a shell or search PATH for the executable (commands are absolute argv lists);
* pass the daemon's environment (a hook sees ``QMPDIRTY_EVENT``, ``QMPDIRTY_VM``,
  ``QMPDIRTY_HOST`` and ``PATH`` only, ``sinks.hook_workers``) or put a VM name
  anywhere but an environment value and the JSON on stdin;
* block or raise in a ``fire_*`` method, or let a slow hook delay telemetry;
* let a hook (or its children: each runs in its own session) outlive its timeout.
Every failure (exit status, timeout, missing executable) goes to ``on_result`` as a
``HookOutcome``.
See docs/hooks.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import get_args

from qmpdirty.config.hooks import (
    HookConfig,
    HookKind,
    HookTrigger,
    PublishedHookKind,
    qmp_hook_event,
)
from qmpdirty.config.load import Config
from qmpdirty.decisions.migration.hooks_due import qmp_hooks_due
from qmpdirty.facts.vm import QmpEvent
from qmpdirty.sinks.hook_input import OfflineReason, VmOfflineInput, offline_input
from qmpdirty.sinks.hook_process import STDERR_TAIL_BYTES, HookOutcome, outcome, printable
from qmpdirty.sinks.hook_queue import HookJob, HookQueue
from qmpdirty.sinks.hook_workers import DEFAULT_PATH, HookWorkers, OnResult, hook_environment
from qmpdirty.telemetry.schema import InfoPayload
from qmpdirty.telemetry.topics import sanitise

__all__ = [
    "DEFAULT_PATH",
    "HOOK_EVENTS",
    "STDERR_TAIL_BYTES",
    "HookJob",
    "HookOutcome",
    "HookRunner",
    "OnResult",
    "hook_environment",
    "matching",
    "outcome",
    "printable",
]

log = logging.getLogger(__name__)

#: The event kinds a hook can name (besides ``*``, which matches them all).
HOOK_EVENTS: tuple[HookKind, ...] = get_args(HookKind)
#: VMs whose ``vm-online`` payload is kept for their ``vm-offline`` hooks, at most.
MAX_REMEMBERED = 10_000


def matching(hooks: Sequence[HookConfig], kind: HookKind) -> list[HookConfig]:
    """The configured hooks that run on ``kind`` (their own kind or ``*``), in order."""
    return [h for h in hooks if h.event in (kind, "*")]


def _is_offline(job: HookJob) -> bool:
    return job.kind == "vm-offline"


def _json_line(document: object) -> bytes:
    """``document`` as one line of JSON (the stdin of a hook)."""
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _model_line(model: InfoPayload | VmOfflineInput) -> bytes:
    """A payload model as one line of JSON, written by ``_json_line`` (ASCII with
    ``\\uXXXX`` escapes: the bytes hooks have always read), not by pydantic."""
    return _json_line(model.model_dump(mode="json", by_alias=True))


@contextlib.contextmanager
def _never_raises(what: str, vm: str) -> Iterator[None]:
    """Log what goes wrong while queueing: a hook problem must never reach the
    telemetry path that fired it."""
    try:
        yield
    except Exception:
        log.exception("hooks for %s on VM %s were not queued", what, vm)


class HookRunner:
    """What the daemon fires, turned into queued runs in order; ``HookWorkers`` run them."""

    def __init__(self, cfg: Config, on_result: OnResult,
                 clock: Callable[[], float] = time.time) -> None:
        self._cfg = cfg.hooks
        self._hooks = tuple(h for h in cfg.hook if h.qmp_event is None)
        self._qmp_hooks = tuple(h for h in cfg.hook if h.qmp_event is not None)
        self._clock = clock
        self._host = sanitise(cfg.host.name)
        self._queue = HookQueue(self._cfg.queue_size)
        self._workers = HookWorkers(self._queue, self._cfg.max_concurrent, self._host, on_result)
        self._offline_hooks = bool(matching(self._hooks, "vm-offline"))
        self._last_info: dict[str, InfoPayload] = {}
        self._stopping = False
        self.dropped_total = 0

    @property
    def queued(self) -> int:
        """Runs waiting for a worker."""
        return len(self._queue)

    @property
    def started_total(self) -> int:
        """Runs the workers have started (a dropped run never starts)."""
        return self._workers.started_total

    def waiting(self) -> list[HookJob]:
        """The runs waiting, in the order they will start."""
        return self._queue.waiting()

    def fire_body(self, kind: PublishedHookKind, vm: str, body: bytes) -> None:
        """Queue every hook for ``kind`` with ``body``, the payload exactly as it was
        published, on stdin (one line); never blocks, never raises."""
        with _never_raises(kind, vm):
            self._queue_runs(kind, vm, body.rstrip(b"\n") + b"\n")

    def fire_online(self, vm: str, info: InfoPayload) -> None:
        """Queue the ``vm-online`` hooks with the VM's ``info`` payload on stdin, and keep
        it for the VM's ``vm-offline`` hooks; never blocks, never raises."""
        with _never_raises("vm-online", vm):
            if self._offline_hooks:
                self._remember(vm, info)
            if matching(self._hooks, "vm-online"):
                self._queue_runs("vm-online", vm, _model_line(info))

    def fire_offline(self, vm: str, info: InfoPayload | None = None) -> None:
        """Queue the ``vm-offline`` hooks with a ``VmOfflineInput`` on stdin: when and why
        the session ended, and ``info`` (by default the one the VM's ``vm-online`` hooks
        got, kept for one session); never blocks, never raises."""
        with _never_raises("vm-offline", vm):
            last = self._last_info.pop(vm, None)
            if matching(self._hooks, "vm-offline"):
                reason: OfflineReason = "daemon-stopping" if self._stopping else "session-ended"
                document = offline_input(ts=self._clock(), host=self._host, vm=vm,
                                         reason=reason,
                                         info=info if info is not None else last)
                self._queue_runs("vm-offline", vm, _model_line(document))

    def fire_qmp(self, vm: str, event: QmpEvent) -> None:
        """Queue the ``qmp:NAME`` hooks ``event`` is due for, with the message as QEMU
        sent it (``event.raw``) on their stdin; never blocks, never raises."""
        if not self._qmp_hooks:
            return
        with _never_raises(f"QMP event {event.name}", vm):
            due = qmp_hooks_due(self._qmp_hooks, event)
            if due:
                self._queue_hooks(qmp_hook_event(event.name), due, vm, _json_line(event.raw))

    def stopping(self) -> None:
        """The daemon is stopping: ``vm-offline`` runs (queued, and fired from now on)
        go first, and their stdin says ``daemon-stopping``. Idempotent."""
        if not self._stopping:
            self._stopping = True
            self._queue.promote(_is_offline)

    def _queue_runs(self, kind: HookKind, vm: str, body: bytes) -> None:
        self._queue_hooks(kind, matching(self._hooks, kind), vm, body)

    def _queue_hooks(self, kind: HookTrigger, hooks: Sequence[HookConfig], vm: str,
                     body: bytes) -> None:
        for hook in hooks:
            timeout_s = hook.timeout_s if hook.timeout_s is not None else self._cfg.timeout_s
            self._enqueue(HookJob(kind, vm, tuple(hook.command), timeout_s, body))

    def _remember(self, vm: str, info: InfoPayload) -> None:
        """Keep ``vm``'s ``vm-online`` payload for its ``vm-offline`` hooks (bounded)."""
        self._last_info.pop(vm, None)
        if len(self._last_info) >= MAX_REMEMBERED:
            del self._last_info[next(iter(self._last_info))]
        self._last_info[vm] = info

    def _enqueue(self, job: HookJob) -> None:
        """Put ``job``; when full, the oldest queued run makes room (counted, logged)."""
        dropped = self._queue.put(job, first=self._stopping and _is_offline(job))
        if dropped is None:
            return
        self.dropped_total += 1
        if self.dropped_total == 1 or self.dropped_total % 100 == 0:
            log.warning("hook queue full (%d): dropped the oldest run (%s %s for %s); "
                        "%d dropped so far", self._queue.size, dropped.kind,
                        dropped.command[0], dropped.vm, self.dropped_total)

    async def run(self) -> None:
        """Run queued hooks, ``max_concurrent`` at a time, until cancelled; then kill
        what finished hooks left in their process groups."""
        await self._workers.run()

    async def finish(self, timeout_s: float) -> bool:
        """At stop: run what is queued, ``vm-offline`` runs first and also on
        ``max_concurrent`` workers of their own (the pool may be busy with slow
        hooks), for at most ``timeout_s``. False (and a warning with the count of
        runs left) when some had not run; the daemon then cancels ``run()``."""
        self.stopping()
        return await self._workers.finish(timeout_s)
