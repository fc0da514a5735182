"""Whether QEMU still answers: ``unresponsive`` and back to ``online`` (shell, one task).

A frozen QEMU (SIGSTOP, overload) keeps its socket open but answers nothing: the VM
is ``unresponsive`` as soon as any command times out with nothing answered since, or
a ``query-status`` probe does; ``online`` when it answers again. The session is kept;
commands meanwhile time out and are skipped. Must not end the session or publish
anything but the VM's status.
"""

from __future__ import annotations

import logging
import random
import time

from qmpdirty.cancel import wait_set
from qmpdirty.daemon.view import VmView
from qmpdirty.errors import QmpTimeoutError
from qmpdirty.qmp import queries

log = logging.getLogger(__name__)


async def watch_liveness(view: VmView) -> None:
    """The task. The probe is sent only when no other command was answered within the
    interval (at 1,000 VMs the probes were 200 commands/s for nothing); periods are
    jittered so VMs do not tick together. Times are ``time.monotonic()``, as the
    session stamps its replies and timeouts."""
    interval = view.cfg.qmp.liveness_interval_s
    session = view.session
    stalled = session.stalled
    while True:
        tick = time.monotonic()
        if await wait_set(stalled, interval * random.uniform(0.9, 1.1)):
            stalled.clear()
            if session.answered_at < session.stalled_at:
                _unresponsive(view)
                continue
        if session.answered_at > tick and view.vm.state == "online":
            continue  # another command was answered meanwhile: no probe needed
        try:
            await queries.run_state(session)
        except QmpTimeoutError:
            _unresponsive(view)
            continue
        if view.vm.state == "unresponsive":
            log.info("VM %s: QEMU answers again: online", view.name)
            view.out.state("online")


def _unresponsive(view: VmView) -> None:
    if view.vm.state == "online":
        log.warning("VM %s: QEMU does not answer (frozen?): unresponsive", view.name)
        view.out.state("unresponsive")
