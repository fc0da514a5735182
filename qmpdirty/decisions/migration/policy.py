"""What the daemon may change in a migrating VM by itself (pure core).

Stage: decisions. With ``[policy] apply_recommendations`` and not under libvirt, a
migration that the forecast says will not converge (at both ends of its inputs: not
while ``uncertain``) gets its ``downtime-limit`` raised to the recommended value, once
per migration (README § Policy). Off by default. No
I/O: the shell sends ``migrate-set-parameters`` and remembers what it applied.
"""

from __future__ import annotations

from collections.abc import Collection

from qmpdirty.decisions.migration.forecast import Advice, AdviceAction


def downtime_to_apply(converges: bool | None, advice: tuple[Advice, ...], *, allowed: bool,
                      applied: Collection[AdviceAction]) -> int | None:
    """The ``downtime-limit`` (ms) to set now, or None: not allowed, the forecast does
    not say "no" (``converges`` as published: false only when both ends of the inputs
    say so), it was raised already in this migration, or nothing is recommended."""
    if not allowed or converges is not False or "downtime-limit" in applied:
        return None
    raise_it = next((a for a in advice if a.action == "downtime-limit"), None)
    if raise_it is None or raise_it.value is None:
        return None
    return int(raise_it.value)
