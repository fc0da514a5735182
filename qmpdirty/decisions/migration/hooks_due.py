"""When a migration hook is due (pure core).

Stage: decisions. The daemon fires hooks where it publishes; whether a change is worth
a hook is decided here, from values (docs/hooks.md § Events). No I/O: the shell keeps
the previous value and fires.
"""

from __future__ import annotations


def forecast_turned_negative(previous: bool | None, current: bool | None) -> bool:
    """``forecast-negative`` fires when ``converges`` turns false from true or unknown
    (``None`` is unknown, also for "no forecast yet")."""
    return current is False and previous is not False
