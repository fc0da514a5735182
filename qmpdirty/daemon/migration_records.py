"""What one VM's migration tracker says to publish, published (shell; the migrations
task's).

``Migrations`` hands every effect of ``decisions.migration.tracker`` here: ``migration``
(a source's with the forecast made at that poll; when what it shows changed, and
``migration-status`` when its status moved), ``migration/pass``, ``migration/summary``
(each with the VM's ``uuid``) and, on a source whose guest runs, the in-migration
``dirty_rate`` (QEMU's, else an estimate; when it changed). Must not advance the
tracker, nor decide whether a payload changed: ``decisions.migration.republish`` does.
"""

from __future__ import annotations

import logging

from qmpdirty.daemon.policy import PolicyActions
from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import republish as rp
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.errors import cause_of
from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import forecast as fc

log = logging.getLogger(__name__)


class MigrationRecords:
    """The migration records of one VM's live session."""

    def __init__(self, view: VmView, policy: PolicyActions) -> None:
        self._view = view
        self._policy = policy
        self._shown: rp.MigrationShown | None = None  # what ``migration`` showed last
        self._rate_shown: rp.RateShown | None = None  # the in-migration rate shown last

    def began(self) -> None:
        """A migration began: its in-migration rate is news again."""
        self._rate_shown = None

    def publish(self, effect: mig.Effect) -> None:
        """Publish what one effect of the tracker says to."""
        v = self._view
        match effect:
            case mig.MigrationChanged(migration=m):
                self._changed(m)
            case mig.PassCompleted(migration=m, pass_no=pass_no):
                v.out.publish(render.pass_record(v.out.stamp(), m, pass_no, v.event_expiry(),
                                                 uuid=v.identity.uuid))
                self._changed(m)  # the forecast in ``migration`` is renewed at every pass
            case mig.MigrationEnded(migration=m, outcome=outcome, ended_ts=ended_ts):
                log.info("VM %s: migration %s %s", v.name, m.id, outcome)
                v.forecaster.ended()
                v.out.publish(render.summary(v.out.stamp(), m, outcome, ended_ts, cause_of(m),
                                             uuid=v.identity.uuid))

    def _changed(self, m: mig.Migration) -> None:
        """``migration`` with this poll's forecast (a source's: a destination has none),
        when what it shows changed; its hook when the status moved."""
        v, applied = self._view, self._policy.applied
        view = v.forecaster.during(m, v.clock(), v.info, v.has_vfio) \
            if m.role == "source" else None
        now = rp.migration_shown(m, view, applied)
        decision = rp.republish_migration(self._shown, now)
        if decision.publish:
            self._shown = now
            summary = fc.summary(view.outlook, mig.passes_done(m)) if view else None
            advice = fc.recommendations(view.advice, applied) if view else []
            msg = render.migration(v.out.stamp(), m, uuid=v.identity.uuid, forecast=summary,
                                   recommendations=advice)
            v.out.publish(msg)
            if decision.status_hook:
                v.out.fire("migration-status", msg)
        if view is not None:
            self._publish_rate(view.dirty)
            self._policy.consider(view)

    def _publish_rate(self, d: DirtyEstimate | None) -> None:
        """The in-migration ``dirty_rate``, when ``rate_to_publish`` says so."""
        v = self._view
        shown = rp.rate_to_publish(d, v.role, self._rate_shown)
        if d is not None and shown is not None:
            self._rate_shown = shown
            v.out.publish(render.dirty_rate_during_migration(v.out.stamp(), d,
                                                             v.dirty_rate_expiry()))
            v.vm.dirty_rate_retained = True
