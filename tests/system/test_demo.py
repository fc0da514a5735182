"""``qmpdirty demo`` — the README's main job — runs through and leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

from qmpdirty.demo.lab.daemon_process import QMPDIRTY


def _lab_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64 -name (alpha|beta)|mosquitto_sub"],
                         capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def test_demo_migrates_and_cleans_up(tmp_path: Path) -> None:
    before = _lab_processes()
    out = subprocess.run([QMPDIRTY, "demo", "--workdir", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for line in ("alpha  QMP session online", "dirty rate", "pass 1 done",
                 "migration completed in", "incoming migration completed",
                 '"outcome": "completed"', "QMP session offline"):
        assert line in text, f"{line!r} missing from the demo's output:\n{text}"
    assert _lab_processes() <= before, "the demo left processes behind"
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
