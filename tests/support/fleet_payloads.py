"""Retained payloads of one VM as a daemon would publish them, for ``qmpdirty top``'s
and the hooks' tests (built with the payload models, so valid by construction)."""

from __future__ import annotations

import time

from pydantic import BaseModel

from qmpdirty.decisions.role import role_of
from qmpdirty.telemetry.schema import (
    BlockersPayload,
    DirtyRatePayload,
    ForecastPayload,
    ForecastSummary,
    InfoPayload,
    MigrationPayload,
    PredictedBlocker,
    TrackedDevice,
    TrackingPayload,
)

MIB = 1 << 20
BLOCKER = "0000:3b:00.1: VFIO migration is not supported in kernel"


def dump(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


def info_model(host: str, vm: str, run_state: str = "running") -> InfoPayload:
    """The ``info`` payload (also what a ``vm-online`` hook is handed)."""
    role = role_of(run_state, None)
    return InfoPayload(
        ts=time.time(), host=host, vm=vm, seq=1, qemu_version="10.0.2", uuid=None,
        machine="pc-q35-10.0", accel="kvm", ram_bytes=2**30, vcpus=2, run_state=run_state,
        role=role.role, role_reason=role.reason, qmp="unix:/run/q.sock", pid=4242,
        migration_events=True)


def info(host: str, vm: str, run_state: str = "running") -> bytes:
    return dump(info_model(host, vm, run_state))


def blockers(host: str, vm: str, migratable: bool = True) -> bytes:
    predicted = [] if migratable else [PredictedBlocker(
        text=BLOCKER, device="/machine/hostdev0", cause="no migration driver",
        remedy="bind a variant driver")]
    return dump(BlockersPayload(
        ts=time.time(), host=host, vm=vm, seq=2, migratable=migratable, predicted=predicted,
        observed=[p.text for p in predicted], agree=True, missing=[], unexpected=[],
        unmodelled=[], unknown_facts=[]))


def device(n: int, mode: str) -> TrackedDevice:
    return TrackedDevice.model_validate({
        "id": f"hostdev{n}", "qom_path": f"/machine/peripheral/hostdev{n}",
        "qom_type": "vfio-pci", "host_bdf": f"0000:3b:00.{n}", "name": f"0000:3b:00.{n}",
        "driver": "mlx5_vfio_pci", "backend": "iommufd", "container": None, "mode": mode,
        "reasons": []})


def tracking(host: str, vm: str, modes: tuple[str, ...] = ()) -> bytes:
    return dump(TrackingPayload(
        ts=time.time(), host=host, vm=vm, seq=3, qemu_version="10.0.2",
        devices=[device(n, m) for n, m in enumerate(modes)], containers=[],
        realize_errors=[], complete=True))


def dirty_rate(host: str, vm: str, mib_per_s: float, bound: float | None = 0.08) -> bytes:
    return dump(DirtyRatePayload(
        ts=time.time(), host=host, vm=vm, seq=4, bytes_per_s=mib_per_s * MIB,
        mode="page-sampling", source="calc-dirty-rate", window_s=1.0, error_bound_rel=bound))


def forecast(host: str, vm: str, eta_s: float | None = 42.0) -> bytes:
    converges = eta_s is not None
    return dump(ForecastPayload(
        ts=time.time(), host=host, vm=vm, seq=5,
        verdict="converges" if converges else "does-not-converge", applicable=True,
        reason=None, blockers=[], converges=converges, eta_s=eta_s, downtime_ms=120.0,
        passes=3, bandwidth_bytes_per_s=100 * MIB, bandwidth_source="configured",
        dirty_bytes_per_s=20 * MIB, dirty_source="calc-dirty-rate", downtime_limit_ms=300.0,
        remaining_bytes=2**30, vfio_bytes=0, recommendations=[], model="geometric-v1",
        notes=[]))


def migration(host: str, vm: str, status: str = "active", remaining: int = 2**29,
              eta_s: float | None = 7.0) -> bytes:
    summary = ForecastSummary(converges=True, eta_s=eta_s, downtime_ms=100.0, passes=3,
                              passes_remaining=1)
    return dump(MigrationPayload.model_validate({
        "ts": time.time(), "host": host, "vm": vm, "seq": 6, "id": "m1", "uuid": None,
        "role": "source", "status": status, "statuses": ["setup", status], "pass": 2,
        "started_ts": time.time() - 10, "elapsed_s": 10.0, "transferred_bytes": 2**30,
        "remaining_bytes": remaining, "total_bytes": 2**31,
        "bandwidth_bytes_per_s": 100.0 * MIB, "dirty_bytes_per_s": None,
        "vfio_transferred_bytes": None, "expected_downtime_ms": None, "throttle_percent": None,
        "error": None, "forecast": summary}))


def vm_state(host: str, vm: str, prefix: str = "qmpdirty", *, status: str = "online",
             migratable: bool = True, modes: tuple[str, ...] = (), mib_per_s: float = 10.0,
             migrating: bool = False) -> dict[str, bytes]:
    """Every retained topic of one VM, by topic."""
    base = f"{prefix}/{host}/vm/{vm}"
    out = {f"{base}/status": status.encode(), f"{base}/info": info(host, vm),
           f"{base}/blockers": blockers(host, vm, migratable),
           f"{base}/tracking": tracking(host, vm, modes),
           f"{base}/dirty_rate": dirty_rate(host, vm, mib_per_s),
           f"{base}/forecast": forecast(host, vm)}
    if migrating:
        out[f"{base}/migration"] = migration(host, vm)
    return out
