"""A VM's role, from its run state and its migration: what may be measured and claimed
(pure core).

Stage: decisions. design.md § What the published state must mean, "Role first": only
a running guest has a dirty rate and a pre-migration forecast; a destination waiting
for or receiving a migration, a paused or post-migrate VM is never "migratable,
converges", and ``admit`` says why not. ``role_of`` maps QEMU's ``RunState``
(qapi/run-state.json, 10.2) and the side of the migration the tracker follows, if
any, to one ``VmRole`` with a reason a person can read; the predicates below say what
follows from it. No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.decisions.migration.tracker import PHASE_OF, Phase

#: What a VM is doing, as far as migration is concerned (``info.role``).
VmRole = Literal[
    "running",  # the guest runs: measured, forecast, may be admitted
    "paused",  # stopped by someone (stop, the debugger), an I/O error or the watchdog
    "suspended",  # the guest suspended itself (S3)
    "prelaunch",  # started with -S, never run (``cont`` starts it)
    "incoming-waiting",  # -incoming: waiting for a migration stream
    "incoming-receiving",  # -incoming: a migration stream is arriving
    "migrating-out",  # the source of a migration under way (switchover included)
    "migrated-away",  # postmigrate: the guest now runs on the destination
    "snapshot",  # saving or restoring a snapshot (savevm/loadvm)
    "shutdown",  # the guest shut down; QEMU stays (-no-shutdown)
    "crashed",  # the guest panicked, or KVM stopped it on an internal error
    "unknown",  # the run state is not known, or not one qmpdirty models (colo)
]
#: Which end of a migration the tracker follows (``tracker.Role``), None when idle.
MigrationSide = Literal["source", "destination"]

#: RunState -> (role, why), for every run state whose role does not depend on a
#: migration. ``finish-migrate`` and ``inmigrate`` are decided in ``role_of``.
_BY_RUN_STATE: dict[str, tuple[VmRole, str]] = {
    "running": ("running", "the guest is running"),
    "paused": ("paused", "the guest is paused"),
    "debug": ("paused", "the guest is paused in the debugger"),
    "io-error": ("paused", "the guest is paused on an I/O error"),
    "watchdog": ("paused", "the guest is paused by its watchdog"),
    "suspended": ("suspended", "the guest is suspended (S3)"),
    "prelaunch": ("prelaunch", "the guest was never started (-S: waiting for cont)"),
    "postmigrate": ("migrated-away", "migrated away: the guest now runs on the destination"),
    "save-vm": ("snapshot", "a snapshot is being saved"),
    "restore-vm": ("snapshot", "a snapshot is being restored"),
    "shutdown": ("shutdown", "the guest has shut down"),
    "guest-panicked": ("crashed", "the guest panicked"),
    "internal-error": ("crashed", "the guest stopped on an internal error"),
}


@dataclass(frozen=True, slots=True)
class RoleVerdict:
    """A VM's role, why, and the run state it rests on (None: not known yet)."""

    role: VmRole
    reason: str
    run_state: str | None

    @property
    def guest_runs(self) -> bool:
        """The guest's vCPUs run: only then does it dirty memory."""
        return self.run_state == "running"


def role_of(run_state: str | None, migrating: MigrationSide | None) -> RoleVerdict:
    """The role of a VM in ``run_state`` whose migration tracker follows ``migrating``.

    A source keeps its run state (``running``, or ``paused`` for a paused guest) while
    it migrates, and is ``finish-migrate`` during the switchover; a destination is
    ``inmigrate`` from start-up until the stream has arrived (then ``running``, or
    ``paused`` under libvirt until it resumes the guest)."""
    if run_state == "inmigrate":
        if migrating is not None:
            return RoleVerdict("incoming-receiving", "receiving an incoming migration",
                               run_state)
        return RoleVerdict("incoming-waiting", "waiting for an incoming migration", run_state)
    if run_state == "finish-migrate" or (migrating == "source" and run_state in (
            "running", "paused", "suspended")):
        return RoleVerdict("migrating-out", "a migration out is under way", run_state)
    if run_state is None:
        return RoleVerdict("unknown", "the run state is not known yet", run_state)
    role, why = _BY_RUN_STATE.get(run_state, (
        "unknown", f"run state {run_state} is not modelled by qmpdirty"))
    return RoleVerdict(role, why, run_state)


def switchover_settling(run_state: str | None, migrating: MigrationSide | None) -> bool:
    """Whether a source's run state has yet to follow its ended migration: QEMU emits a
    migration's end (``completed``, ``failed``, ``cancelled``) from the migration thread
    a moment before it leaves ``finish-migrate`` for ``postmigrate`` (or resumes the
    guest; migration.c ``migration_iteration_finish``), so a read at the event can still
    see ``finish-migrate``, and no further event says when it moved."""
    return run_state == "finish-migrate" and migrating is None


def role_from_poll(run_state: str | None, migration_status: str | None) -> RoleVerdict:
    """The role from one look (``probe``: no tracker): a ``query-migrate`` status that
    is running counts as a migration, on the side the run state says."""
    if PHASE_OF.get(migration_status, Phase.RUNNING) is not Phase.RUNNING:
        return role_of(run_state, None)
    return role_of(run_state, "destination" if run_state == "inmigrate" else "source")


def measures_dirty_rate(v: RoleVerdict) -> bool:
    """``calc-dirty-rate`` only while the guest runs and no migration does."""
    return v.role == "running"


def reports_dirty_rate(v: RoleVerdict) -> bool:
    """A ``dirty_rate`` is retained only while the guest runs: measured (``running``)
    or from its outgoing migration. A destination, a paused or a migrated-away guest
    dirties nothing of its own: its retained rate is cleared."""
    return v.guest_runs and v.role in ("running", "migrating-out")


def forecast_applies(v: RoleVerdict) -> bool:
    """A pre-migration forecast means something only for a running guest with no
    migration under way (a migrating source has its forecast inside ``migration``)."""
    return v.role == "running"
