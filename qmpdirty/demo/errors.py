"""The demo's and its lab's one error (the demo's own, outside the product's tree).

Stage: demo. Not a ``QmpDirtyError``: the product never raises or catches it (nothing
but ``cli/demo.py`` imports the demo), and ``demo/show.py`` reports it itself.
"""

from __future__ import annotations


class DemoError(Exception):
    """The demo or its lab could not build a guest, start a process or drive a VM."""
