"""Gather one VM's VFIO facts over QMP and from the host, then decide (shell).

Stage: shell glue. Gathers the VM's topology over QMP (``qmp.gather``) and the host's
facts from sysfs/debugfs/proc (``host.sysfs``, in a worker thread: file reads must not
stall the event loop), then runs the pure engine (``decisions.vfio.evaluate``). Used
by the daemon's VFIO task and by ``probe``.
"""

from __future__ import annotations

import asyncio

from qmpdirty.config import Config
from qmpdirty.decisions.vfio.evaluate import VfioVerdict, evaluate
from qmpdirty.decisions.vfio.host_caps import interpret_host
from qmpdirty.facts.fact import Fact
from qmpdirty.host.sysfs import read_host
from qmpdirty.qmp.gather import TopologyReader, gather_topology
from qmpdirty.qmp.session import QmpSession


async def gather_and_evaluate(session: QmpSession, cfg: Config,
                              reader: TopologyReader | None = None, *,
                              full: bool = False) -> VfioVerdict:
    """Gather over QMP (through the session's ``reader`` when it has one: cheaper
    refreshes) and from the host, then decide. Host files are read only for devices:
    without one there is nothing to read (and no worker thread per VM per refresh)."""
    topology = await (reader.read(full=full) if reader else gather_topology(session))
    bdfs = [d.bdf for d in topology.devices if d.bdf]
    host = await asyncio.to_thread(read_host, cfg.host, cfg.device_caps, bdfs) if bdfs \
        else interpret_host({}, Fact[bool].unknown("no VFIO device"), cfg.device_caps)
    return evaluate(topology, host)
