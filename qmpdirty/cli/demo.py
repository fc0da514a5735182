"""``qmpdirty demo``: three VMs, a simulated VFIO device, hot-plug, admit, migrate (shell).

Stage: cli. The only importer of ``qmpdirty.demo`` (an import-linter contract keeps
the product from importing it). It must not do more than start the demo.
"""

from __future__ import annotations

from pathlib import Path

from qmpdirty import logs
from qmpdirty.demo.show import run_demo


def demo(workdir: Path | None) -> int:
    """Run the demo (its files in ``workdir`` when given); returns the exit code."""
    logs.configure("warning")
    return run_demo(workdir)
