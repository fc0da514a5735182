"""The old home of the ``tracking`` and ``blockers`` renderers (pure core).

Stage: telemetry. They live in ``telemetry.render.vfio`` now; this module only keeps
``telemetry.vfio.tracking`` / ``.blockers`` importable for the callers not yet moved.
"""

from qmpdirty.telemetry.render.vfio import blockers, tracking

__all__ = ["blockers", "tracking"]
