"""One VM's facts, events, dirty rate and hook failures -> messages (pure core).

Stage: telemetry. ``vm/<vm>/info``, ``event/<EVENT>``, ``dirty_rate`` (measured, or
during a migration) and ``hook``. Each function takes values plus a ``VmStamp`` (the
shell owns ``seq`` and the clock) and calls the payload model with keywords, so that
mypy checks every key. It must not decide anything nor do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from qmpdirty.config.hooks import HookTrigger
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.role import RoleVerdict
from qmpdirty.facts.vm import DirtyRateMeasurement, QmpEvent, VmInfo
from qmpdirty.telemetry import schema
from qmpdirty.telemetry.message import Outgoing, VmStamp
from qmpdirty.telemetry.render.envelope import vm_message
from qmpdirty.telemetry.topics import TopicKind


class HookRun(Protocol):
    """How one hook run ended, as ``hook`` shows it (``sinks.hooks.HookOutcome``)."""

    @property
    def event(self) -> HookTrigger: ...
    @property
    def command(self) -> Sequence[str]: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    @property
    def duration_s(self) -> float: ...


def info_payload(stamp: VmStamp, facts: VmInfo, role: RoleVerdict, qmp: str,
                 pid: int | None) -> schema.InfoPayload:
    """The ``vm/<vm>/info`` payload (``probe`` prints it as it is)."""
    return schema.InfoPayload(
        **stamp.common(), qemu_version=facts.basics.version_text, uuid=facts.uuid,
        machine=facts.basics.machine, accel=facts.accel, ram_bytes=facts.basics.ram_bytes,
        vcpus=facts.vcpus, run_state=facts.run_state, role=role.role,
        role_reason=role.reason, qmp=qmp, pid=pid, migration_events=facts.migration_events,
    )


def info(stamp: VmStamp, facts: VmInfo, role: RoleVerdict, qmp: str, pid: int | None
         ) -> Outgoing:
    """``vm/<vm>/info``."""
    return vm_message(stamp, TopicKind.INFO, info_payload(stamp, facts, role, qmp, pid))


def dirty_rate_measured(
    stamp: VmStamp, m: DirtyRateMeasurement, expiry_s: int | None, *,
    error_bound_rel: float | None = None, basis: str | None = None,
) -> Outgoing:
    """``vm/<vm>/dirty_rate`` from a ``calc-dirty-rate`` measurement."""
    vcpus = [schema.VcpuDirtyRate(id=i, bytes_per_s=r) for i, r in m.vcpu_bytes_per_s] or None
    model = schema.DirtyRatePayload(
        **stamp.common(), bytes_per_s=m.bytes_per_s, mode=m.mode, source="calc-dirty-rate",
        window_s=m.window_s, sample_pages=m.sample_pages, windows=m.windows,
        sample_pages_total=m.sample_pages_total, vcpus=vcpus,
        error_bound_rel=error_bound_rel, basis=basis,
    )
    return vm_message(stamp, TopicKind.DIRTY_RATE, model, expiry_s=expiry_s)


def dirty_rate_during_migration(stamp: VmStamp, d: DirtyEstimate, expiry_s: int | None
                                ) -> Outgoing:
    """``vm/<vm>/dirty_rate`` while migrating: QEMU's ``ram.dirty-pages-rate`` (source
    ``migration``, mode ``migration-bitmap``) or, until QEMU has one, an estimate (source
    ``estimate``, mode: what it rests on), with its bound when one is known (QEMU's
    counts every page: 0; an estimate from a measurement keeps the measurement's)."""
    model = schema.DirtyRatePayload(
        **stamp.common(), bytes_per_s=d.bytes_per_s, mode=d.mode, source=d.source,
        window_s=None, basis=d.basis, error_bound_rel=d.error_bound_rel,
    )
    return vm_message(stamp, TopicKind.DIRTY_RATE, model, expiry_s=expiry_s)


def event(stamp: VmStamp, ev: QmpEvent, expiry_s: int | None) -> Outgoing:
    """``vm/<vm>/event/<EVENT>`` for every QMP event."""
    model = schema.EventPayload(**stamp.common(), event=ev.name, data=ev.data,
                                qemu_ts=ev.qemu_ts)
    return vm_message(stamp, TopicKind.EVENT, model, event=ev.name, expiry_s=expiry_s)


def hook_result(stamp: VmStamp, outcome: HookRun) -> Outgoing:
    """``vm/<vm>/hook``: one failed hook run."""
    model = schema.HookResultPayload(
        **stamp.common(), event=outcome.event, command=list(outcome.command),
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out, error=outcome.error, duration_s=outcome.duration_s,
    )
    return vm_message(stamp, TopicKind.HOOK, model)
