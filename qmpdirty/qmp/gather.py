"""Gather one VM's VFIO topology over QMP: the loop that drives the sans-I/O query (shell).

Stage: shell. ``run`` sends each batch a query asks for (``qmp/topology/query.py``) at
once through ``QmpSession.execute`` (allow-list, timeouts) and feeds the replies back,
as values, until the query has its answer. What to ask, in how many rounds, and what
the replies mean is the query's; this module must not interpret a reply or decide what
to send. ``gather_topology`` keeps no state; ``TopologyReader`` (one per session) keeps
the last gather to refresh cheaply.

Failure: QEMU's error replies go back to the query, which decides (see its module); a
timeout or an allow-list refusal of a request the query marked optional goes back as a
``Failed`` value too. Anything else (a closed session, a timeout of a request the query
needs) propagates as qmpdirty's ``QmpError``, as does whatever the query raises.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from qmpdirty.errors import CommandNotAllowed, QmpCommandError, QmpTimeoutError
from qmpdirty.facts.qemu import QemuVersion
from qmpdirty.facts.topology import VFIO_TYPES, VmTopology
from qmpdirty.facts.vm import VmBasics
from qmpdirty.qmp.session import QmpSession
from qmpdirty.qmp.topology.exchange import Failed, Query, Reply, Request, Returned
from qmpdirty.qmp.topology.query import PERIPHERALS, Gathered, ListingQuery, TopologyQuery
from qmpdirty.qmp.topology.replies import QomChild

T = TypeVar("T")


async def run(session: QmpSession, query: Query[T]) -> T:
    """Drive ``query`` over ``session``: each batch sent at once, replies fed back in order."""
    while batch := query.next_requests():
        query.receive(await asyncio.gather(*(_reply(session, r) for r in batch)))
    return query.result()


async def _reply(session: QmpSession, request: Request) -> Reply:
    try:
        return Returned(await session.execute(request.command, request.arguments))
    except QmpCommandError as exc:
        return Failed(exc.error_class, exc.desc)
    except (QmpTimeoutError, CommandNotAllowed) as exc:
        if not request.optional:
            raise
        return Failed(None, str(exc))


async def gather_topology(session: QmpSession, *, device_types: frozenset[str] = VFIO_TYPES,
                          version: QemuVersion | None = None,
                          basics: VmBasics | None = None) -> VmTopology:
    """Everything about the VM that decides VFIO dirty tracking and its ranges.

    ``device_types``: the QOM types gathered as devices (see ``TopologyQuery``);
    ``version``: the QEMU version when the caller knows it (saves a ``query-version``);
    ``basics``: the ``VmInfo.basics`` the caller read (saves three commands, and the
    topology's basics are that value).
    """
    return await run(session, TopologyQuery(device_types, version=version, basics=basics))


class TopologyReader:
    """One VM's topology, refreshed cheaply while it has no VFIO device (one per session).

    A refresh of such a VM asks ``query-migrate`` and the containers a device can be
    added to (4 commands, not 12); anything new there, or ``full=True`` (a topology
    event), gathers everything again (``TopologyQuery``, ``previous``).
    """

    def __init__(self, session: QmpSession, *, device_types: frozenset[str] = VFIO_TYPES,
                 version: QemuVersion | None = None) -> None:
        self._session = session
        self._types = device_types
        self._version = version
        self._last: Gathered | None = None

    @property
    def peripherals(self) -> frozenset[QomChild]:
        """The children of peripheral and peripheral-anon at the last read."""
        return self._last.peripherals if self._last else frozenset()

    @property
    def blocked_reasons(self) -> tuple[str, ...] | None:
        """QEMU's ``blocked-reasons`` at the last read; None before one finished."""
        return self._last.topology.blocked_reasons if self._last else None

    async def read(self, *, full: bool = False, basics: VmBasics | None = None) -> VmTopology:
        """Refresh or (``full``) gather again; ``basics`` as ``gather_topology``'s."""
        query = TopologyQuery(self._types, version=self._version, basics=basics,
                              previous=None if full else self._last)
        topology = await run(self._session, query)
        self._last = query.gathered
        return topology


async def peripherals(session: QmpSession) -> frozenset[QomChild]:
    """The children of peripheral and peripheral-anon now (the hot-plug poll)."""
    listed = await run(session, ListingQuery(PERIPHERALS))
    return frozenset(c for children in listed.values() for c in children)
