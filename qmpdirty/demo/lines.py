"""What the demo prints for a payload the daemon published: keyed blocks of lines (demo).

Each function takes a payload (validated with the daemon's own payload models, so a
field the daemon renamed fails here, not silently on screen) and returns ``Block``s:
a key and its lines. The screen prints a block when its lines differ from the last
block it printed under that key, so every change is one line (or one block) and
nothing repeats. Every word about a VM comes from what the daemon published: these
functions word it, they decide nothing. Must not print, subscribe or read QEMU.
"""

from __future__ import annotations

from collections.abc import Sequence

from qmpdirty.decisions.admission import forecast_line
from qmpdirty.telemetry.schema import (
    BlockersPayload,
    DirtyRatePayload,
    ForecastPayload,
    InfoPayload,
    IovaRange,
    MigrationPayload,
    PassPayload,
    SummaryPayload,
    TrackedContainer,
    TrackedDevice,
    TrackingPayload,
)

MIB = 1 << 20
#: A key and the lines printed under it.
Block = tuple[str, tuple[str, ...]]
#: How each basis was reached, in words (README § VFIO decisions).
BASIS_WORDS = {"host": "read from the host", "qemu": "inferred from QEMU's blocked-reasons",
               "driver": "known driver behaviour or [[device_caps]]",
               "assumed": "assumed: nobody could know"}
_FIT_WORDS = {True: "yes", False: "NO", None: "unknown"}


def size(n: float) -> str:
    """``4 GiB``, ``32 MiB``, ``4.03 GiB``: binary units, two decimals when not whole."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{n:.0f} B"


def spans(ranges: Sequence[IovaRange]) -> str:
    """``0x0 +4 GiB, 0x380000000000 +32 MiB (4.03 GiB in all)``."""
    listed = ", ".join(f"{r.iova:#x} +{size(r.length)}" for r in ranges)
    return f"{listed} ({size(sum(r.length for r in ranges))} in all)"


def device_block(d: TrackedDevice, simulated: bool) -> Block:
    """A VFIO device: which it is, its tracking mode and why, and how that was reached."""
    what = " (simulated)" if simulated else ""
    return (f"device {d.qom_path}", (
        f"VFIO {d.id or d.qom_path}{what}: host {d.host_bdf}, driver {d.driver}: tracking "
        f"mode {d.mode}: {'; '.join(d.reasons)}",
        f"  basis {d.basis} ({BASIS_WORDS.get(d.basis, d.basis)}): {d.basis_reason}"))


def container_block(c: TrackedContainer) -> Block:
    """A container's engine and, where devices log DMA, its ranges, their fit and the
    optimal plan."""
    key = f"container {c.id}"
    if c.mode != "device":
        return key, (f"container {c.id}: engine {c.mode}: {'; '.join(c.limits)}",)
    plan = (f"  optimal plan: {spans(c.optimal_ranges)}" if c.optimal_ranges
            else "  optimal plan: none (the device's range limit is not known)")
    return key, (
        f"container {c.id}: engine {c.mode}: DMA-logging ranges {spans(c.ranges)}",
        f"  fit the device's limits: {_FIT_WORDS[c.fits]}: {'; '.join(c.limits)}",
        plan)


def tracking_blocks(t: TrackingPayload, before: TrackingPayload | None,
                    simulated: bool) -> list[Block]:
    """Every device and container; a device that was in ``before`` and is gone says so."""
    blocks = [device_block(d, simulated) for d in t.devices]
    blocks += [container_block(c) for c in t.containers]
    now = {d.qom_path for d in t.devices}
    for d in before.devices if before is not None else ():
        if d.qom_path not in now:
            blocks.append((f"device {d.qom_path}", (f"VFIO {d.id or d.qom_path}: no longer "
                                                    "in the VM",)))
    return blocks


def blockers_block(b: BlockersPayload) -> Block:
    """Migratable or not; each blocker with how it was predicted, QEMU's word, the remedy."""
    if b.migratable:
        agree = {True: "QEMU's blocked-reasons agree with the prediction",
                 False: "QEMU agrees, but the prediction differed",
                 None: "no VFIO device: nothing to compare"}[b.agree]
        return "blockers", (f"migratable: no blockers ({agree})",)
    lines = ["NOT migratable:"]
    for p in b.predicted:
        said = "QEMU reports it too" if p.text in b.observed else "QEMU does not report it"
        lines += [f"  blocker: {p.text}",
                  f"    predicted, basis {p.basis}: {p.basis_reason}; {said}",
                  f"    remedy: {p.remedy}"]
    predicted = {p.text for p in b.predicted}
    lines += [f"  blocker reported by QEMU (not predicted): {text}"
              for text in b.observed if text not in predicted]
    return "blockers", tuple(lines)


def info_block(i: InfoPayload) -> Block:
    ram = f"{i.ram_bytes // MIB} MiB" if i.ram_bytes is not None else "? MiB"
    return "info", (f"QEMU {i.qemu_version} {i.machine} {i.accel}, {ram}, {i.run_state}: "
                    f"{i.role_reason}",)


def dirty_rate_block(r: DirtyRatePayload) -> Block:
    bound = f" ±{r.error_bound_rel * 100:.0f} %" if r.error_bound_rel else ""
    return "dirty_rate", (f"dirty rate {r.bytes_per_s / MIB:.1f} MiB/s{bound} ({r.source}, "
                          f"{r.mode})",)


def forecast_block(f: ForecastPayload) -> Block:
    """The pre-migration forecast in ``admit``'s words."""
    return "forecast", (f"pre-migration {forecast_line(f)}",)


def migration_block(m: MigrationPayload) -> Block:
    rem, bw = m.remaining_bytes, m.bandwidth_bytes_per_s
    return "migration", (f"migration {m.status:<10} pass {m.pass_}"
                         + (f"  remaining {rem / MIB:6.1f} MiB" if rem is not None else "")
                         + (f"  {bw / MIB:5.1f} MiB/s" if bw else ""),)


def pass_block(p: PassPayload) -> Block:
    dirty = p.dirty_bytes_per_s
    return f"pass {p.pass_}", (
        f"pass {p.pass_} done at {p.elapsed_s:.1f}s: remaining "
        f"{(p.remaining_bytes or 0) / MIB:.1f} MiB, dirty "
        + (f"{dirty / MIB:.1f} MiB/s" if dirty else "not yet known"),)


def summary_block(s: SummaryPayload) -> Block:
    if s.role == "destination":
        return "summary", (f"incoming migration {s.outcome} after {s.total_time_ms} ms",)
    return "summary", (f"migration {s.outcome} in {s.total_time_ms} ms, downtime "
                       f"{s.downtime_ms} ms, {s.passes} passes, "
                       f"{(s.transferred_bytes or 0) / MIB:.0f} MiB sent",)
