"""A VM's role from its run state and its migration, what follows from it, and what the
retained forecast may claim (decisions/role.py, decisions/migration/claim.py)."""

from __future__ import annotations

import pytest

from qmpdirty.decisions.migration.claim import BlockerState, blocker_state, claim
from qmpdirty.decisions.migration.forecast import Advice, Forecast
from qmpdirty.decisions.migration.uncertainty import Outlook
from qmpdirty.decisions.role import (
    MigrationSide,
    VmRole,
    forecast_applies,
    measures_dirty_rate,
    reports_dirty_rate,
    role_from_poll,
    role_of,
    switchover_settling,
)
from qmpdirty.decisions.vfio.blocker_texts import Blocker, BlockerKind
from qmpdirty.decisions.vfio.blockers import reconcile

#: Every RunState of qapi/run-state.json (QEMU 10.2).
RUN_STATES = ("debug", "inmigrate", "internal-error", "io-error", "paused", "postmigrate",
              "prelaunch", "finish-migrate", "restore-vm", "running", "save-vm", "shutdown",
              "suspended", "watchdog", "guest-panicked", "colo")


@pytest.mark.parametrize(("run_state", "migrating", "role", "allowed"), [
    ("running", None, "running", (True, True, True)),
    ("running", "source", "migrating-out", (False, True, False)),
    ("finish-migrate", "source", "migrating-out", (False, False, False)),  # switchover
    ("finish-migrate", None, "migrating-out", (False, False, False)),
    ("paused", "source", "migrating-out", (False, False, False)),  # a paused guest migrating
    ("postmigrate", None, "migrated-away", (False, False, False)),
    ("inmigrate", None, "incoming-waiting", (False, False, False)),
    ("inmigrate", "destination", "incoming-receiving", (False, False, False)),
    ("paused", None, "paused", (False, False, False)),
    ("debug", None, "paused", (False, False, False)),
    ("io-error", None, "paused", (False, False, False)),
    ("watchdog", None, "paused", (False, False, False)),
    ("suspended", None, "suspended", (False, False, False)),
    ("prelaunch", None, "prelaunch", (False, False, False)),
    ("save-vm", None, "snapshot", (False, False, False)),
    ("restore-vm", None, "snapshot", (False, False, False)),
    ("shutdown", None, "shutdown", (False, False, False)),
    ("guest-panicked", None, "crashed", (False, False, False)),
    ("internal-error", None, "crashed", (False, False, False)),
    ("colo", None, "unknown", (False, False, False)),
    (None, None, "unknown", (False, False, False)),
    ("running", "destination", "running", (True, True, True)),  # resumed before the end event
])
def test_role_and_what_it_allows(run_state: str | None, migrating: MigrationSide | None,
                                 role: VmRole, allowed: tuple[bool, bool, bool]) -> None:
    """``allowed``: measured (calc-dirty-rate), a dirty rate retained, a forecast."""
    v = role_of(run_state, migrating)
    assert (v.role, v.run_state) == (role, run_state)
    assert v.reason
    assert (measures_dirty_rate(v), reports_dirty_rate(v), forecast_applies(v)) == allowed


@pytest.mark.parametrize("run_state", RUN_STATES)
def test_every_run_state_has_a_role_and_only_running_is_measured(run_state: str) -> None:
    v = role_of(run_state, None)
    assert v.role != "unknown" or run_state == "colo"
    assert measures_dirty_rate(v) is (run_state == "running")
    assert forecast_applies(v) is (run_state == "running")


def test_the_reasons_admit_prints() -> None:
    assert role_of("inmigrate", None).reason == "waiting for an incoming migration"
    assert role_of("paused", None).reason == "the guest is paused"
    assert role_of("postmigrate", None).reason.startswith("migrated away")


@pytest.mark.parametrize(("run_state", "status", "role"), [
    ("running", None, "running"), ("running", "completed", "running"),
    ("running", "active", "migrating-out"), ("inmigrate", "active", "incoming-receiving"),
    ("inmigrate", "none", "incoming-waiting"), ("postmigrate", "completed", "migrated-away"),
])
def test_role_from_one_poll(run_state: str, status: str | None, role: VmRole) -> None:
    assert role_from_poll(run_state, status).role == role


# --- what the forecast may claim ---------------------------------------------------------

RUNNING = role_of("running", None)
CONVERGES = Outlook.single(Forecast(True, 4.0, 100.0, 2))
ADVICE = (Advice("auto-converge", None, "r", True),)


def test_a_running_unblocked_vm_gets_the_models_verdict() -> None:
    for blockers in (None, BlockerState(True)):
        c = claim(RUNNING, blockers, CONVERGES, ADVICE)
        assert (c.verdict, c.applicable, c.reason, c.forecast, c.advice) == (
            "converges", True, None, CONVERGES.central, ADVICE)
    assert claim(RUNNING, None, Outlook.single(Forecast(False, None, 900.0, None)), ()).verdict == \
        "does-not-converge"
    assert claim(RUNNING, None, Outlook.single(Forecast(None, None, None, None)), ()).verdict \
        == "unknown"


def test_blocked_never_converges() -> None:
    c = claim(RUNNING, BlockerState(False, ("a", "b")), CONVERGES, ADVICE)
    assert (c.verdict, c.applicable, c.blockers) == ("blocked", True, ("a", "b"))
    assert c.forecast.converges is None and c.forecast.eta_s is None and c.advice == ()
    assert c.reason == "QEMU refuses to migrate it: a; b"


def test_the_role_comes_first_and_the_blockers_are_still_named() -> None:
    c = claim(role_of("paused", None), BlockerState(False, ("a",)), CONVERGES, ADVICE)
    assert (c.verdict, c.applicable, c.reason, c.blockers) == (
        "not-applicable", False, "the guest is paused", ("a",))
    assert c.forecast.converges is None and c.advice == ()


def test_blocker_state_names_qemus_blockers_then_predicted_ones_it_does_not_report() -> None:
    predicted = (Blocker("dev0: VFIO migration is not supported in kernel",
                         BlockerKind.NO_KERNEL_SUPPORT, "/machine/peripheral/h0", "r",
                         "vfio_migration_realize"),)
    r = reconcile(predicted, ("The vvfat (rw) format used by node '#b' does not support "
                              "live migration",))
    assert blocker_state(r) == BlockerState(False, (
        "The vvfat (rw) format used by node '#b' does not support live migration",
        "dev0: VFIO migration is not supported in kernel"))
    assert blocker_state(reconcile((), ())) == BlockerState(True, ())


@pytest.mark.parametrize(("run_state", "migrating", "settling"), [
    ("finish-migrate", None, True),  # the migration ended, the run state not yet moved
    ("finish-migrate", "source", False),  # the switchover itself
    ("postmigrate", None, False),
    ("running", None, False),  # failed or cancelled: the guest runs again
    (None, None, False),
])
def test_a_source_settles_after_its_migration_ended(
        run_state: str | None, migrating: MigrationSide | None, settling: bool) -> None:
    assert switchover_settling(run_state, migrating) is settling
