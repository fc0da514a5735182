"""When a hook is due (pure core).

Stage: decisions. The daemon fires hooks where it publishes; whether a change is worth
a hook is decided here, from values (docs/hooks.md § Events): a forecast that turns
negative, and which ``qmp:NAME`` hooks a QMP event runs (named for it, and its
``data`` passes their filter). No I/O: the shell keeps the previous value and fires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qmpdirty.config.hooks import HookConfig
from qmpdirty.facts.vm import QmpEvent


def forecast_turned_negative(previous: bool | None, current: bool | None) -> bool:
    """``forecast-negative`` fires when ``converges`` turns false from true or unknown
    (``None`` is unknown, also for "no forecast yet")."""
    return current is False and previous is not False


def qmp_hooks_due(hooks: Sequence[HookConfig], event: QmpEvent) -> list[HookConfig]:
    """The ``qmp:NAME`` hooks that ``event`` runs, in order: named for its name (exactly:
    QEMU's names are upper case), and whose ``data`` filter its ``data`` passes."""
    return [h for h in hooks
            if h.qmp_event == event.name and data_matches(h.data, event.data)]


def data_matches(wanted: Mapping[str, object] | None, data: Mapping[str, object]) -> bool:
    """Every key of ``wanted`` is a top-level member of ``data`` with an equal value
    (``json_equal``); no filter, or an empty one, matches every event."""
    return all(key in data and json_equal(value, data[key])
               for key, value in (wanted or {}).items())


def json_equal(a: object, b: object) -> bool:
    """``a`` and ``b`` are the same JSON value: of one JSON type (a boolean is not a
    number: ``true`` is not ``1``), numbers equal as numbers (``1`` is ``1.0``), strings
    exactly (case and all), arrays element by element, objects with the same keys."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a is None and b is None
