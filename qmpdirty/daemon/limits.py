"""The process's open-file limit, raised to what a host full of VMs needs (shell).

Every QMP session holds a descriptor, server mode one more per connection still in its
greeting, and the MQTT client and hook pipes a few. The soft limit is often 1,024 (kept
low for select()); the daemon uses none of select()'s sets, so it raises the soft limit
to the hard one (capped at ``WANTED``), as systemd recommends for such programs. The
units set ``LimitNOFILE`` as well. Must not: lower a limit, or fail the start.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

#: Enough for thousands of VMs with room for a flood of server-mode connections.
WANTED = 65536
#: Below this hard limit, server mode under load may refuse QEMUs: say so.
LOW = 4096


def raise_open_files(wanted: int = WANTED) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` within the hard limit; return
    the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft
        log.debug("open-file limit raised from %d to %d", soft, target)
        soft = target
    if hard != resource.RLIM_INFINITY and hard < LOW:
        log.warning("open-file hard limit is %d: server mode may accept QEMUs slowly under "
                    "a flood of connections; raise LimitNOFILE", hard)
    return soft
