"""The demo's and its lab's one error (not part of the daemon's error tree in errors.py).

It still descends from ``QmpDirtyError`` so that the CLI reports it like any other.
"""

from __future__ import annotations

from qmpdirty.errors import QmpDirtyError


class DemoError(QmpDirtyError):
    """The demo or its lab could not build a guest, start a process or drive a VM."""
