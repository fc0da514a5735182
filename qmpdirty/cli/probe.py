"""``qmpdirty probe``: connect once, gather, print, disconnect (shell).

Stage: cli. Read-only whatever the config says: the probe's policy
(``cli.common.READ_ONLY``) allows queries only. With ``--json`` it prints one object
whose ``info``, ``tracking`` and ``blockers`` members are exactly the payloads the
daemon publishes on those topics. Exit 0 printed, 1 QEMU unreachable or failing,
2 bad address or configuration. It must not publish anything.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

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
from qmpdirty.config import Config, load_config
from qmpdirty.config.address import QmpAddress, parse_qmp_address
from qmpdirty.daemon.vfio import gather_and_evaluate
from qmpdirty.errors import ConfigError, QmpDirtyError
from qmpdirty.qmp import queries
from qmpdirty.qmp.session import QmpSession
from qmpdirty.telemetry import render, vfio
from qmpdirty.telemetry.render import VmStamp
from qmpdirty.telemetry.topics import Topics, sanitise


def probe_command(address_text: str, config: Path | None, as_json: bool) -> int:
    """``qmpdirty probe``: gather one VM and print it; returns the exit code."""
    try:
        address = parse_qmp_address(address_text)
        cfg = load_config(config) if config else Config()
    except ValueError as exc:
        print(f"--qmp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print_problems(exc)
        return EXIT_USAGE
    logs.configure("warning")
    try:
        result = run_loop(probe(cfg, address, time.time()))
    except QmpDirtyError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(result, indent=2) if as_json else human(result))
    return EXIT_OK


async def probe(cfg: Config, address: QmpAddress, now: float) -> dict[str, Any]:
    """Gather one VM's payloads: ``{"info": ..., "tracking": ..., "blockers": ...}``."""
    session = await QmpSession.open(
        address, policy=READ_ONLY, command_timeout_s=cfg.qmp.command_timeout_s,
        connect_timeout_s=cfg.qmp.connect_timeout_s, event_queue_size=100, label=str(address),
    )
    try:
        version = await queries.qemu_version(session)
        identity = await queries.identify(session, None)
        events = await queries.migration_events_on(session)
        info = await queries.gather_info(session, version, identity, events)
        snapshot = await queries.migration_snapshot(session)
        view = await gather_and_evaluate(session, cfg)
    finally:
        await session.close()
    topics = Topics.create(cfg.mqtt.topic_prefix, cfg.host.resolved_name)
    vm = sanitise(identity.name or address.stem)
    messages = {
        "info": render.info(VmStamp(topics, vm, 1, now), info, str(address), None),
        "tracking": vfio.tracking(VmStamp(topics, vm, 2, now), view),
        "blockers": vfio.blockers(VmStamp(topics, vm, 3, now), view),
    }
    result: dict[str, Any] = {k: json.loads(m.payload) for k, m in messages.items()}
    result["migration_status"] = snapshot.status
    return result


def human(result: dict[str, Any]) -> str:
    """A short text report of a probe result."""
    info, blockers = result["info"], result["blockers"]
    ram = info["ram_bytes"] or 0
    lines = [
        f"VM {info['vm']}  QEMU {info['qemu_version']}  machine {info['machine']}  "
        f"accel {info['accel']}",
        f"  {info['vcpus']} vCPUs, {mib(ram)} RAM, run state {info['run_state']}, "
        f"migration events {'on' if info['migration_events'] else 'off'}",
        f"  migration: {result['migration_status'] or 'none so far'}",
        f"  migratable: {'yes' if blockers['migratable'] else 'no'}",
    ]
    lines += [f"    blocked: {reason}" for reason in blockers["observed"]]
    if blockers["predicted"] or blockers["observed"]:
        lines.append(f"  prediction {'agrees' if blockers['agree'] else 'DISAGREES'} with QEMU")
    lines += [f"    predicted: {b['text']}\n      remedy: {b['remedy']}"
              for b in blockers["predicted"]]
    tracking = result["tracking"]
    if not tracking["devices"]:
        lines.append("  VFIO devices: none")
    for d in tracking["devices"]:
        lines.append(f"  VFIO {d['name']} ({d['qom_type']}, {d['driver'] or 'driver ?'}): "
                     f"{d['mode']} - {d['reasons'][0]}")
    for c in tracking["containers"]:
        spans = ", ".join(f"{r['iova']:#x}+{r['length']:#x}" for r in c["ranges"]) or "none"
        lines.append(f"  container {c['id']}: {c['mode']}; ranges {spans}; fits {c['fits']}")
    return "\n".join(lines)
