"""Will a migration converge, when, and with what downtime? (pure core)

Stage: decisions. A geometric model of QEMU's pre-copy (migration/migration.c
``migration_iteration_run``): every pass sends what is dirty at a bandwidth ``B``
while the guest dirties ``D`` bytes/s; the next pass must send what the last one
let the guest dirty, capped by the guest's RAM. QEMU switches over when the
pending bytes - RAM still dirty plus VFIO's stop-copy data, which
``vfio_state_pending_exact`` adds to ``must_precopy`` - fit in
``B x downtime-limit``. So the migration converges when ``D < B`` (remaining
shrinks by ``D/B`` each pass) or the remaining already fits, and never when VFIO's
stop-copy data alone exceeds the downtime budget.

The bulk (first) pass sends every page once, but a zero page costs 9 bytes on the wire,
not 4 KiB: its duration is what it sends (``first_pass_bytes``, estimated by
``decisions.migration.firstpass``) over ``B``. A pass that has run ``pass_elapsed_s``
already leaves what the guest dirtied since it began, not only from now on.

Limits (README § Dirty rate, forecast and advice): ``D`` is the rate of *distinct* pages
dirtied per window, so a small working set saturates; throttling (auto-converge,
dirty-limit) and multifd/compression are not modelled; VFIO stop-copy size is not
reported by QEMU and comes from configuration. ``decisions.migration.uncertainty`` runs
the model at both ends of its inputs' ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.facts.qemu import DIRTY_LIMIT, QemuVersion, since

MODEL = "geometric-precopy-v2"


@dataclass(frozen=True, slots=True)
class ForecastInputs:
    """Everything the model needs; ``None`` where unknown."""

    bandwidth_bytes_per_s: float | None
    dirty_bytes_per_s: float | None
    remaining_bytes: int | None  # bytes still to send in the current pass
    downtime_limit_ms: float | None
    vfio_bytes: int = 0  # stop-copy data sent during the downtime
    ram_bytes: int | None = None  # cap on what a pass can leave dirty
    #: bytes the bulk pass still puts on the wire (zero pages at their header's cost);
    #: None: all of ``remaining_bytes``
    first_pass_bytes: float | None = None
    in_first_pass: bool = True
    max_passes: int = 30
    #: how long the pass under way has run: what the guest dirtied meanwhile is sent next
    pass_elapsed_s: float = 0.0
    #: the ETA counts the stop-copy phase at ``bandwidth_bytes_per_s`` (the favourable end
    #: of a range does not: QEMU lifts ``max-bandwidth`` for it)
    stop_counted: bool = True


@dataclass(frozen=True, slots=True)
class Forecast:
    converges: bool | None
    eta_s: float | None  # from now to completion (including the downtime)
    downtime_ms: float | None
    #: pre-copy passes still to run with the guest running, the one under way included
    #: (0: the rest already fits in the downtime); QEMU's own pass counter also counts
    #: the dirty-bitmap sync that ends the last one and the one at stop-copy
    passes: int | None
    notes: tuple[str, ...] = ()


def forecast(i: ForecastInputs) -> Forecast:
    """Run the model; unknown inputs give ``converges: None`` and say which."""
    b, d, limit = i.bandwidth_bytes_per_s, i.dirty_bytes_per_s, i.downtime_limit_ms
    if b is None or d is None or i.remaining_bytes is None or limit is None:
        missing = [name for name, value in (
            ("bandwidth", b), ("dirty rate", d),
            ("remaining bytes", i.remaining_bytes), ("downtime limit", limit))
            if value is None]
        return Forecast(None, None, None, None, (f"unknown: {', '.join(missing)}",))
    if b <= 0:
        return Forecast(False, None, None, None, ("bandwidth is 0: nothing moves",))
    budget = b * limit / 1000  # QEMU's threshold_size
    cap = float(i.ram_bytes) if i.ram_bytes else float("inf")
    if i.vfio_bytes > budget:
        return Forecast(False, None, i.vfio_bytes / b * 1000, None, (
            f"VFIO stop-copy data ({i.vfio_bytes} B) alone exceeds the downtime budget "
            f"({budget:.0f} B = bandwidth x downtime-limit)",))
    return _iterate(i, b, d, budget, cap)


def _iterate(i: ForecastInputs, b: float, d: float, budget: float, cap: float) -> Forecast:
    """The ETA by QEMU's switchover rule, the passes by the geometric model.

    QEMU (``migration_iteration_run``) checks after every batch whether the pending data
    fits the budget and switches over as soon as it does, mid-pass. The pending data is
    what is still to send plus what the guest dirtied since the last sync; it shrinks
    at ``b - d`` (``P(t) = P - (b - d) t``), so the switchover comes after
    ``(P + vfio - budget) / (b - d)``, and the stop then sends about the budget: the
    downtime limit, at bandwidth ``b``. The bulk pass runs to its end first (its
    remaining bytes count zero pages). ``passes``: the passes of the geometric model,
    each sending what the last one left dirty."""
    # what QEMU's next exact sync would find: what is left, and what was dirtied since
    pending = min(float(i.remaining_bytes or 0) + d * i.pass_elapsed_s, cap)
    if pending + i.vfio_bytes <= budget:
        return _switchover(i, b, 0.0, pending, 0)
    eta = 0.0
    bulk = i.in_first_pass and i.first_pass_bytes is not None
    if bulk:
        eta = (i.first_pass_bytes or 0.0) / b  # zero pages go almost for free
        pending = min(d * (i.pass_elapsed_s + eta), cap)
        if pending + i.vfio_bytes <= budget:  # fits once the bulk pass is done
            return _switchover(i, b, eta, pending, 1)
    passes = _passes(i, b, d, budget, cap)
    if passes is None:  # the dirt does not shrink (d >= b), or too slowly
        why = (f"the guest dirties {d / 2**20:.1f} MiB/s, at least the {b / 2**20:.1f} MiB/s "
               "bandwidth: each pass leaves as much dirty as it sent") if d >= b else (
            f"more than {i.max_passes} passes needed")
        return Forecast(False, None, (pending + i.vfio_bytes) / b * 1000, None, (why,))
    eta += (pending + i.vfio_bytes - budget) / (b - d)
    return _switchover(i, b, eta, budget - i.vfio_bytes, passes)


def _switchover(i: ForecastInputs, b: float, eta: float, pending: float, passes: int
                ) -> Forecast:
    """Converged: the stop sends ``pending`` and the VFIO data at ``b`` (the published
    downtime); the ETA counts it unless ``stop_counted`` is off (QEMU lifts
    ``max-bandwidth`` for the stop: on a fast link it takes next to nothing)."""
    downtime_s = (pending + i.vfio_bytes) / b
    return Forecast(True, eta + (downtime_s if i.stop_counted else 0.0), downtime_s * 1000,
                    passes)


def _passes(i: ForecastInputs, b: float, d: float, budget: float, cap: float) -> int | None:
    """Pre-copy passes until what is left fits the budget, the one under way included;
    None when more than ``max_passes`` (or the dirt never shrinks)."""
    remaining = float(i.remaining_bytes or 0)
    bulk = i.in_first_pass and i.first_pass_bytes is not None
    t = (i.first_pass_bytes or 0.0) / b if bulk else remaining / b
    left, passes = min(d * (i.pass_elapsed_s + t), cap), 1
    while left + i.vfio_bytes > budget:
        if d >= b or passes >= i.max_passes:
            return None
        left, passes = min(d * left / b, cap), passes + 1
    return passes


#: What a recommendation changes (the ``recommendations[].action`` of the payloads).
AdviceAction = Literal["downtime-limit", "dirty-limit", "auto-converge", "postcopy", "bandwidth"]


@dataclass(frozen=True, slots=True)
class Advice:
    action: AdviceAction
    value: float | None
    reason: str
    applicable: bool


def recommend(i: ForecastInputs, f: Forecast, *, vcpus: int | None, has_vfio: bool,
              qemu_version: QemuVersion, kvm: bool) -> tuple[Advice, ...]:
    """When the forecast says no: what would make it converge (advice only)."""
    if f.converges is not False or i.bandwidth_bytes_per_s is None:
        return ()
    b = i.bandwidth_bytes_per_s
    d = i.dirty_bytes_per_s or 0.0
    remaining = float(i.remaining_bytes or 0)
    # what a pass leaves dirty once it no longer shrinks: the last pass must send it
    steady = min(d * remaining / b, float(i.ram_bytes or remaining))
    needed_ms = (steady + i.vfio_bytes) / b * 1000
    out = [Advice("downtime-limit", float(int(needed_ms) + 1),
                  f"with this downtime limit (ms) the last pass fits: "
                  f"{needed_ms:.0f} ms of data at {b / 2**20:.1f} MiB/s", True)]
    target = 0.5 * b  # leave half the bandwidth for progress
    per_vcpu = target / max(vcpus or 1, 1) / 2**20
    dirty_limit_ok = since(qemu_version, DIRTY_LIMIT) and kvm
    out.append(Advice("dirty-limit", float(max(1, int(per_vcpu))),
                      f"throttle each vCPU to {per_vcpu:.0f} MB/s (vcpu-dirty-limit) so the "
                      "guest dirties half the bandwidth", dirty_limit_ok))
    out.append(Advice("auto-converge", None, "throttle vCPUs progressively until the dirty "
                      "rate falls below the bandwidth (capability auto-converge)", True))
    out.append(Advice("postcopy", None, "switch to post-copy: converges whatever the dirty rate"
                      + ("; refused by QEMU with VFIO devices" if has_vfio else ""),
                      not has_vfio))
    if d > 0:
        out.append(Advice("bandwidth", 2 * d, "a max-bandwidth of twice the dirty rate "
                          "converges in a few passes, if the link allows it", True))
    return tuple(out)
