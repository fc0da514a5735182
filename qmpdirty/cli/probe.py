"""``qmpdirty probe``: connect once, gather, print, disconnect (shell).

Stage: cli. Read-only whatever the config says: the probe's policy
(``cli.common.READ_ONLY``) allows queries only. It prints a ``ProbeReport``: as text,
or with ``--json`` as one object whose ``info``, ``tracking`` and ``blockers`` members
are exactly the payloads the daemon publishes on those topics. Exit 0 printed, 1 QEMU
unreachable or failing, 2 bad address or configuration. It must not publish anything.
On a UNIX socket it connects itself, to read QEMU's pid with ``SO_PEERCRED`` (the
kernel's word, as in server mode) for ``info.pid``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from qmpdirty import logs
from qmpdirty.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    READ_ONLY,
    mib,
    print_problems,
    run_loop,
)
from qmpdirty.config.address import QmpAddress, parse_qmp_address
from qmpdirty.config.load import Config, load_config
from qmpdirty.daemon.vfio_verdict import gather_and_evaluate
from qmpdirty.decisions.role import role_from_poll
from qmpdirty.decisions.vfio.evaluate import VfioVerdict
from qmpdirty.errors import AddressError, ConfigError, QmpConnectError, QmpDirtyError
from qmpdirty.facts.vm import VmInfo
from qmpdirty.qmp import queries
from qmpdirty.qmp.listener import peer_cred
from qmpdirty.qmp.session import QmpSession
from qmpdirty.telemetry.message import VmStamp
from qmpdirty.telemetry.render.vfio import blockers_payload, tracking_payload
from qmpdirty.telemetry.render.vm import info_payload
from qmpdirty.telemetry.schema import BlockersPayload, InfoPayload, TrackingPayload
from qmpdirty.telemetry.topics import Topics, sanitise


def probe_command(address_text: str, config: Path | None, as_json: bool) -> int:
    """``qmpdirty probe``: gather one VM and print it; returns the exit code."""
    try:
        address = parse_qmp_address(address_text)
        cfg = load_config(config) if config else Config()
    except AddressError as exc:
        print(f"--qmp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print_problems(exc)
        return EXIT_USAGE
    logs.configure("warning")
    try:
        report = run_loop(probe(cfg, address, time.time()))
    except QmpDirtyError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(report_json(report) if as_json else human(report))
    return EXIT_OK


class ProbeReport(BaseModel):
    """What ``probe`` prints: with ``--json`` as one object, else as a short text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    info: InfoPayload
    tracking: TrackingPayload
    blockers: BlockersPayload
    migration_status: str | None = Field(description="query-migrate status; null: none yet")


async def connect(address: QmpAddress, timeout_s: float
                  ) -> tuple[QmpAddress | socket.socket, int | None]:
    """A UNIX address: a connected socket and the pid of QEMU on its other end (TCP:
    the address itself, no pid). Raises QmpConnectError."""
    if address.kind != "unix":
        return address, None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().sock_connect(sock, str(address.path))
        return sock, peer_cred(sock).pid
    except (OSError, TimeoutError) as exc:
        sock.close()
        why = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise QmpConnectError(f"{address}: cannot connect: {why}") from exc


async def probe(cfg: Config, address: QmpAddress, now: float) -> ProbeReport:
    """Connect, gather one VM's ``info``, ``tracking`` and ``blockers``, disconnect."""
    target, _pid = await connect(address, cfg.qmp.connect_timeout_s)
    session = await QmpSession.open(
        target, policy=READ_ONLY, command_timeout_s=cfg.qmp.command_timeout_s,
        connect_timeout_s=cfg.qmp.connect_timeout_s, event_queue_size=100, label=str(address),
    )
    try:
        version = await queries.qemu_version(session)
        identity = await queries.identify(session, session.peer_pid)
        events = await queries.migration_events_on(session)
        info = await queries.gather_info(session, version, identity, events)
        snapshot = await queries.migration_snapshot(session)
        view = await gather_and_evaluate(session, cfg, basics=info.basics)
    finally:
        await session.close()
    topics = Topics.create(cfg.mqtt.topic_prefix, cfg.host.name)
    return build_report(topics, sanitise(identity.name or address.stem), now, info=info,
                        qmp=str(address), view=view, migration_status=snapshot.status,
                        pid=identity.pid)


def build_report(topics: Topics, vm: str, now: float, *, info: VmInfo, qmp: str,
                 view: VfioVerdict, migration_status: str | None,
                 pid: int | None = None) -> ProbeReport:
    """The payloads the daemon would publish first (``seq`` 1-3), as one report."""
    return ProbeReport(
        info=info_payload(VmStamp(topics, vm, 1, now), info,
                          role_from_poll(info.run_state, migration_status), qmp, pid),
        tracking=tracking_payload(VmStamp(topics, vm, 2, now), view),
        blockers=blockers_payload(VmStamp(topics, vm, 3, now), view),
        migration_status=migration_status,
    )


def report_json(report: ProbeReport) -> str:
    """``--json``: the payloads with their wire names, indented."""
    return json.dumps(report.model_dump(mode="json", by_alias=True), indent=2)


def human(report: ProbeReport) -> str:
    """A short text report."""
    info, blockers = report.info, report.blockers
    lines = [
        f"VM {info.vm}  QEMU {info.qemu_version}  machine {info.machine}  accel {info.accel}",
        f"  {_count(info.vcpus, 'vCPU')}, {mib(info.ram_bytes or 0)} RAM, "
        f"run state {info.run_state}, "
        f"migration events {'on' if info.migration_events else 'off'}",
        f"  migration: {report.migration_status or 'none so far'}",
        f"  migratable: {'yes' if blockers.migratable else 'no'}",
    ]
    lines += [f"    blocked: {reason}" for reason in blockers.observed]
    lines += _agreement_lines(blockers)
    lines += [f"    predicted ({b.basis}): {b.text}\n      remedy: {b.remedy}"
              for b in blockers.predicted]
    return "\n".join(lines + _tracking_lines(report.tracking))


def _agreement_lines(blockers: BlockersPayload) -> list[str]:
    """``agree`` is only about the kinds qmpdirty models (VFIO); the rest are counted
    as not modelled, never as agreement (first-use review B6)."""
    n = len(blockers.unmodelled)
    others = f"{n} blocker{'s' if n != 1 else ''} not modelled" if n else ""
    if blockers.agree is None:
        return [f"  {others} (nothing predicted: no VFIO device)"] if others else []
    scope = "on VFIO blockers; " + others if others else ""
    verdict = "agrees" if blockers.agree else "DISAGREES"
    lines = [f"  prediction {verdict} with QEMU{' ' + scope if scope else ''}"]
    lines += [f"    unknown: {u.fact}{' of ' + u.device if u.device else ''}: {u.reason}"
              for u in blockers.unknown_facts]
    return lines


def _tracking_lines(tracking: TrackingPayload) -> list[str]:
    lines = [] if tracking.devices else ["  VFIO devices: none"]
    for d in tracking.devices:
        lines.append(f"  VFIO {d.name} ({d.qom_type}, {d.driver or 'driver ?'}): {d.mode} "
                     f"({d.basis}) - {d.reasons[0]}")
        if d.basis != "host":
            lines.append(f"      basis: {d.basis_reason}")
    for c in tracking.containers:
        spans = ", ".join(f"{r.iova:#x}+{r.length:#x}" for r in c.ranges) or "none"
        lines.append(f"  container {c.id}: {c.mode}; ranges {spans}; fits {c.fits}")
    return lines


def _count(n: int | None, noun: str) -> str:
    """``1 vCPU``, ``2 vCPUs``, ``? vCPUs`` (unknown)."""
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"
