"""The questions qmpdirty asks QEMU, as async functions returning facts (shell).

Stage: shell (calls ``QmpSession.execute``), translation is delegated to the pure
``translate`` module. Each function is one thing the daemon wants to know.
"""

from __future__ import annotations

import asyncio

from qmpdirty.errors import QmpCommandError
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.vm import (
    DirtyRateMeasurement,
    GuestMemoryStats,
    MigrationParams,
    MigrationSnapshot,
    VmIdentity,
    VmInfo,
)
from qmpdirty.qmp import gather, translate
from qmpdirty.qmp.arguments import DirtyRateRequest, calc_dirty_rate_args, query_dirty_rate_args
from qmpdirty.qmp.commands import EVENTS_ON
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology.query import PERIPHERALS, ListingQuery


async def identify(session: QmpSession, pid: int | None) -> VmIdentity:
    """Who is on the other end: ``query-name`` and ``query-uuid``."""
    name, uuid = await asyncio.gather(session.execute("query-name"), session.execute("query-uuid"))
    return translate.identity_from(name, uuid, pid)


async def qemu_version(session: QmpSession) -> QemuVersion:
    """``query-version``."""
    return translate.version_from(await session.execute("query-version"))


async def migration_events_on(session: QmpSession) -> bool:
    """Whether capability ``events`` is on."""
    return translate.migration_events_from(await session.execute("query-migrate-capabilities"))


async def enable_migration_events(session: QmpSession) -> None:
    """Turn capability ``events`` on (allowed only by policy; see ``qmp.commands``).

    QEMU refuses capability changes while a migration runs; the caller retries later.
    """
    await session.execute("migrate-set-capabilities", {"capabilities": list(EVENTS_ON)})


async def gather_info(
    session: QmpSession, version: QemuVersion, identity: VmIdentity,
    migration_events: bool | None,
) -> VmInfo:
    """Everything ``vm/<vm>/info`` publishes, asked concurrently."""
    kvm, status, cpus, memory = await asyncio.gather(
        session.execute("query-kvm"), session.execute("query-status"),
        session.execute("query-cpus-fast"), session.execute("query-memory-size-summary"),
    )
    try:
        machine = translate.machine_from(
            await session.execute("qom-get", {"path": "/machine", "property": "type"})
        )
    except QmpCommandError:
        machine = None
    return translate.info_from(
        version=version, identity=identity, machine=machine, kvm_reply=kvm,
        status_reply=status, cpus_reply=cpus, memory_reply=memory,
        migration_events=migration_events,
    )


async def run_state(session: QmpSession) -> str:
    """``query-status`` -> run state."""
    return translate.run_state_from(await session.execute("query-status"))


async def migration_snapshot(session: QmpSession) -> MigrationSnapshot:
    """``query-migrate``."""
    return translate.migration_snapshot_from(await session.execute("query-migrate"))


async def migration_params(session: QmpSession) -> MigrationParams:
    """``query-migrate-parameters``."""
    return translate.migration_params_from(await session.execute("query-migrate-parameters"))


async def start_dirty_rate(
    session: QmpSession, plan: DirtyRateRequest, version: QemuVersion
) -> None:
    """``calc-dirty-rate``; raises QmpCommandError if one is already being measured."""
    await session.execute("calc-dirty-rate", calc_dirty_rate_args(plan, version))


async def read_dirty_rate(
    session: QmpSession, version: QemuVersion
) -> DirtyRateMeasurement | None:
    """``query-dirty-rate``: the measurement, or None while QEMU is still measuring."""
    reply = await session.execute("query-dirty-rate", query_dirty_rate_args(version))
    return translate.dirty_rate_from(reply)


async def balloon_path(session: QmpSession) -> str | None:
    """The QOM path of the VM's virtio-balloon, or None: ``query-balloon`` refuses when
    there is none (DeviceNotActive), else the first one ``-device`` put in a peripheral
    container (listed as the topology query lists them)."""
    try:
        await session.execute("query-balloon")
    except QmpCommandError:
        return None
    listed = await gather.run(session, ListingQuery(PERIPHERALS))
    return translate.balloon_in(listed)


async def guest_memory(session: QmpSession, path: str) -> GuestMemoryStats | None:
    """``qom-get`` of the balloon's ``guest-stats``: None until the guest reports."""
    reply = await session.execute("qom-get", {"path": path, "property": "guest-stats"})
    return translate.guest_memory_from(reply)
