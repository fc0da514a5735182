"""``qmpdirty demo`` — the README's main job — tells the whole story, once per change,
in under a minute, and leaves nothing behind."""

from __future__ import annotations

import re
import subprocess
import time
from itertools import pairwise
from pathlib import Path

import pytest

from qmpdirty.demo.lab.daemon_process import QMPDIRTY

pytestmark = pytest.mark.system

#: ``[  3.5s] gamma  text``: the stamp, the VM, what was said.
LINE = re.compile(r"^\[\s*[\d.]+s\] (.{6}) (.*)$")
VF, NVME = "0000:3b:00.0", "0000:3c:00.0"


def _lab_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64 -name (alpha|beta|gamma)|"
                          "mosquitto_sub"], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float, Path]:
    """One demo for every test of the module: its output, wall time and files."""
    work = tmp_path_factory.mktemp("demo")
    before = _lab_processes()
    started = time.monotonic()
    out = subprocess.run([QMPDIRTY, "demo", "--workdir", str(work)], capture_output=True,
                         text=True, timeout=120, check=False)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert _lab_processes() <= before, "the demo left processes behind"
    return out.stdout, took, work


def said(text: str) -> list[tuple[str, str]]:
    """(vm, text) of every stamped line, in order."""
    return [(m.group(1).rstrip(), m.group(2)) for line in text.splitlines()
            if (m := LINE.match(line))]


def index(lines: list[tuple[str, str]], vm: str, start: str, after: int = 0) -> int:
    """The first line of ``vm`` from ``after`` on that starts with ``start``."""
    for n, (who, text) in enumerate(lines[after:], after):
        if who == vm and text.startswith(start):
            return n
    raise AssertionError(f"{vm}: no line starting {start!r} after line {after}:\n"
                         + "\n".join(f"{w} {t}" for w, t in lines))


def after(lines: list[tuple[str, str]], n: int, k: int = 1) -> str:
    """The ``k``-th line of the same VM after line ``n`` (other VMs' lines interleave)."""
    vm = lines[n][0]
    return [text for who, text in lines[n + 1:] if who == vm][k - 1]


def test_runs_in_under_a_minute_and_cleans_up(run: tuple[str, float, Path]) -> None:
    text, took, work = run
    assert took < 60, f"the demo took {took:.0f} s"
    assert "Traceback" not in (work / "daemon.log").read_text()
    assert "QMP session offline" in text


def test_says_plainly_that_the_vfio_device_is_simulated(run: tuple[str, float, Path]) -> None:
    text = run[0]
    assert "its VFIO device is SIMULATED: this machine has no VFIO hardware" in text
    assert f"gamma  VFIO hostdev0 (simulated): host {VF}, driver mlx5_vfio_pci" in text


def test_shows_tracking_mode_basis_ranges_fit_and_plan(run: tuple[str, float, Path]) -> None:
    lines = said(run[0])
    first = index(lines, "gamma", "VFIO hostdev0 (simulated)")
    assert "tracking mode device: device DMA logging" in lines[first][1]
    assert after(lines, first, 1).startswith("  basis host (read from the host): migration=yes:")
    ranges = index(lines, "gamma", "container legacy:memory: engine device: DMA-logging ranges")
    assert "0x0 +4 GiB, 0x380000000000 +32 MiB" in lines[ranges][1]
    assert after(lines, ranges, 1).startswith("  fit the device's limits: yes: ")
    assert "2 range(s) <= 4" in after(lines, ranges, 1)
    assert after(lines, ranges, 2).startswith("  optimal plan: 0x0 +256 MiB, ")


def test_shows_the_forecast_of_the_migrating_vm(run: tuple[str, float, Path]) -> None:
    lines = said(run[0])
    forecast = index(lines, "alpha", "pre-migration forecast: converges (")
    assert forecast < index(lines, "alpha", "migrating to beta")
    assert "bandwidth 48.0 MiB/s" in lines[forecast][1] and "ETA" in lines[forecast][1]


def test_hot_plug_blocks_admit_says_why_unplug_admits(run: tuple[str, float, Path]) -> None:
    lines = said(run[0])
    plug = index(lines, "gamma", f"device_add driver=vfio-pci,host={NVME},id=hostdev1,bus=rp1")
    blocked = index(lines, "gamma", "NOT migratable:", plug)
    blocker = f"{NVME}: VFIO migration is not supported in kernel"
    assert after(lines, blocked, 1) == f"  blocker: {blocker}"
    assert "QEMU reports it too" in after(lines, blocked, 2)
    assert after(lines, blocked, 3).startswith("    remedy: bind the device to a VFIO variant")
    index(lines, "gamma", "VFIO hostdev0 (simulated): host", plug)  # its mode changed too
    admit = index(lines, "gamma", "$ qmpdirty admit gamma", blocked)
    assert after(lines, admit, 1).startswith(f"  blocker: {blocker} (remedy: ")
    refused = index(lines, "gamma", "  exit 1: not admitted", admit)
    unplug = index(lines, "gamma", "device_del id=hostdev1", refused)
    index(lines, "gamma", "QEMU event DEVICE_DELETED", unplug)
    index(lines, "gamma", "VFIO hostdev1: no longer in the VM", unplug)
    again = index(lines, "gamma", "migratable: no blockers", unplug)
    admit = index(lines, "gamma", "$ qmpdirty admit gamma", again)
    assert after(lines, admit, 1).startswith(
        "  admit: VM gamma on demo is migratable; forecast: converges")
    admitted = index(lines, "gamma", "  exit 0: admitted", admit)
    assert admitted < index(lines, "alpha", "migrating to beta")


def test_migration_and_its_summary(run: tuple[str, float, Path]) -> None:
    text = run[0]
    for line in ("pass 1 done", "alpha  migration completed in", "incoming migration completed",
                 '"outcome": "completed"'):
        assert line in text, f"{line!r} missing from the demo's output:\n{text}"


def test_dirty_rate_once_per_change_never_for_the_destination(
        run: tuple[str, float, Path]) -> None:
    lines = said(run[0])
    rates = [(vm, t) for vm, t in lines if t.startswith("dirty rate")]
    assert rates and {vm for vm, _ in rates} == {"alpha"}, rates
    assert all(a != b for a, b in pairwise(rates)), rates
    migrating = index(lines, "alpha", "migrating to beta")
    assert not [t for _, t in lines[migrating:] if t.startswith("dirty rate")], \
        "a dirty-rate line during or after the migration"


def test_no_line_repeats_the_one_before(run: tuple[str, float, Path]) -> None:
    """Per VM, a line is never the same as that VM's previous one, and no block of
    lines (a device, a container, the blockers) is printed twice without a change."""
    lines = said(run[0])
    for vm in ("alpha", "beta", "gamma"):
        own = [t for who, t in lines if who == vm]
        repeats = [a for a, b in pairwise(own) if a == b]
        assert repeats == [], f"{vm}: {repeats}"
    plan = [t for who, t in lines if who == "gamma" and t.startswith("  optimal plan")]
    assert len(plan) == 2, plan  # at start, and once more after the unplug
