"""The further windows of one dirty-rate measurement (shell).

``daemon.dirty_rate`` starts a measurement's first window and reads it; this runs the
rest of ``plan.windows`` back to back and hands them all to the pure
``decisions.migration.dirtyrate.combine``. A window that cannot start (someone else
measuring), a migration that starts, a guest that stops running, or a timeout ends the
series early: the figure is then made of fewer windows, and says so. Must not decide the
plan or the figure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from qmpdirty.daemon.view import VmView
from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.dirtyrate import DirtyRatePlan, combine
from qmpdirty.decisions.role import measures_dirty_rate
from qmpdirty.errors import QmpCommandError, QmpTimeoutError
from qmpdirty.facts.vm import DirtyRateMeasurement
from qmpdirty.qmp import queries

log = logging.getLogger(__name__)


class Measured(NamedTuple):
    """One measurement: the figure to publish, its bound and basis, and the last
    window's own reading (what ``query-dirty-rate`` keeps answering until the next)."""

    figure: DirtyRateMeasurement
    bound: float | None
    basis: str
    last: DirtyRateMeasurement


async def complete(view: VmView, plan: DirtyRatePlan, first: DirtyRateMeasurement) -> Measured:
    """``first`` and the plan's further windows, combined."""
    readings = [first]
    while (len(readings) < plan.windows and not mig.is_active(view.vm.tracker)
           and measures_dirty_rate(view.role)):
        try:
            found = await _window(view, plan)
        except (QmpCommandError, QmpTimeoutError) as exc:
            log.info("VM %s: dirty-rate window %d of %d: %s", view.name, len(readings) + 1,
                     plan.windows, getattr(exc, "desc", exc))
            break
        if found is None:
            break
        readings.append(found)
    figure, bound, basis = combine(readings, view.info.basics.ram_bytes if view.info else None)
    return Measured(figure, bound, basis, readings[-1])


async def _window(view: VmView, plan: DirtyRatePlan) -> DirtyRateMeasurement | None:
    """One ``calc-dirty-rate`` window, read once QEMU has measured it (None if late).
    ``calc-dirty-rate`` resets QEMU's status before it returns, so the first
    ``measured`` reading is this window's."""
    await queries.start_dirty_rate(view.session, plan, view.version)
    await asyncio.sleep(plan.window_s)
    deadline = view.clock() + plan.window_s + view.cfg.qmp.command_timeout_s
    while view.clock() < deadline:
        found = await queries.read_dirty_rate(view.session, view.version)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    log.warning("VM %s: dirty-rate window did not finish in time", view.name)
    return None
