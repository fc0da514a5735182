"""The VFIO engine for one VM: gather facts, decide, reconcile, shape (shell).

Stage: shell glue. Gathers the VM's topology over QMP (``qmp.topology``) and the
host's facts from sysfs/debugfs/proc (``host.sysfs``, in a worker thread: file
reads must not stall the event loop), then runs the pure decisions and returns
everything the ``tracking`` and ``blockers`` payloads need. Used by the daemon's
session watch and by ``probe``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from qmpdirty.config import Config
from qmpdirty.decisions.blockers import Reconciled, reconcile
from qmpdirty.decisions.container_ranges import RangeReport, container_ranges
from qmpdirty.decisions.tracking import TrackingVerdict, decide
from qmpdirty.facts.topology import Fact, HostFacts, VmTopology
from qmpdirty.host.interpret import interpret_host
from qmpdirty.host.sysfs import read_host
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology import TopologyReader, gather_topology
from qmpdirty.telemetry import vfio
from qmpdirty.telemetry.render import Outgoing, VmStamp


@dataclass(frozen=True, slots=True)
class VfioView:
    """One evaluation of a VM's VFIO dirty tracking."""

    topology: VmTopology
    host: HostFacts
    verdict: TrackingVerdict
    reconciled: Reconciled
    ranges: dict[str, RangeReport]

    def tracking(self, stamp: VmStamp) -> Outgoing:
        return vfio.tracking(stamp, self.topology.qemu_version, self.verdict, self.ranges)

    def blockers(self, stamp: VmStamp) -> Outgoing:
        return vfio.blockers(stamp, self.reconciled)


def evaluate_facts(topology: VmTopology, host: HostFacts) -> VfioView:
    """The pure part: decide, reconcile, compute each container's ranges."""
    verdict = decide(topology, host)
    reconciled = reconcile(verdict.blockers, topology.blocked_reasons)
    ranges = {c.id: container_ranges(c, topology, host) for c in verdict.containers}
    return VfioView(topology, host, verdict, reconciled, ranges)


async def evaluate(session: QmpSession, cfg: Config, reader: TopologyReader | None = None,
                   *, full: bool = False) -> VfioView:
    """Gather over QMP (through the session's ``reader`` when it has one: cheaper
    refreshes) and from the host, then decide. Host files are read only for devices:
    without one there is nothing to read (and no worker thread per VM per refresh)."""
    topology = await (reader.read(full=full) if reader else gather_topology(session))
    bdfs = [d.bdf for d in topology.devices if d.bdf]
    host = await asyncio.to_thread(read_host, cfg.host, cfg.device_caps, bdfs) if bdfs \
        else interpret_host({}, Fact[bool].unknown("no VFIO device"), cfg.device_caps)
    return evaluate_facts(topology, host)
