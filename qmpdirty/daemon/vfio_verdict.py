"""One VM's VFIO verdict now: gather over QMP and from the host, then decide (shell).

Stage: shell glue, the one place the VFIO pipeline is wired for a single evaluation:
the VM's topology over QMP (``qmp.gather``), the host's facts from sysfs/debugfs/proc
(``host.sysfs``, in a worker thread: file reads must not stall the event loop) with
``decisions.vfio.host_caps`` interpreting them (and saying whether the next read is
needed), then the pure engine (``decisions.vfio.evaluate``). Used by the daemon's VFIO
task (``daemon.vfio``) and by ``qmpdirty probe``, which must not reach into a task.
Must not decide, publish or keep state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from qmpdirty.config.load import Config
from qmpdirty.config.sections import DeviceCapsConfig, HostConfig
from qmpdirty.decisions.vfio.evaluate import VfioVerdict, evaluate
from qmpdirty.decisions.vfio.host_caps import (
    NO_INTEL_UNIT,
    behind_intel,
    interpret_host,
    scalable_mode_from_cmdline,
    scalable_mode_from_kconfig,
)
from qmpdirty.facts.fact import Fact
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.vm import VmBasics
from qmpdirty.host import sysfs
from qmpdirty.qmp.gather import TopologyReader, gather_topology
from qmpdirty.qmp.session import QmpSession


async def gather_and_evaluate(session: QmpSession, cfg: Config,
                              reader: TopologyReader | None = None, *,
                              full: bool = False, basics: VmBasics | None = None
                              ) -> VfioVerdict:
    """Gather over QMP (through the session's ``reader`` when it has one: cheaper
    refreshes; with ``basics``, the ``VmInfo.basics`` already read, not asked again)
    and from the host, then decide. Host files are read only for devices: without one
    there is nothing to read (and no worker thread per VM per refresh)."""
    topology = await (reader.read(full=full, basics=basics) if reader
                      else gather_topology(session, basics=basics))
    bdfs = [d.bdf for d in topology.devices if d.bdf]
    host = await asyncio.to_thread(host_facts, cfg.host, cfg.device_caps, bdfs) if bdfs \
        else interpret_host({}, Fact[bool].unknown("no VFIO device"), cfg.device_caps)
    return evaluate(topology, host)


def host_facts(cfg_host: HostConfig, caps: Sequence[DeviceCapsConfig],
               bdfs: Iterable[str]) -> HostFacts:
    """The host's facts for ``bdfs``, keyed as asked (blocking reads: run in a thread).
    ``proc`` cmdline is read only behind an Intel unit, the kernel config only when the
    command line is silent on scalable mode. Never raises for what the files hold."""
    raws = sysfs.read_devices(cfg_host, bdfs)
    sm = NO_INTEL_UNIT
    if behind_intel(raws.values()):
        stated = scalable_mode_from_cmdline(sysfs.read_cmdline(cfg_host))
        sm = stated if stated is not None else scalable_mode_from_kconfig(
            sysfs.read_kernel_config(cfg_host))
    return interpret_host(raws, sm, caps)
