"""Which ``QMPDIRTY_*`` variable set a configuration key (shell: reads the environment).

Stage: config. ``QMPDIRTY_<SECTION>__<KEY>`` variables (or a JSON
``QMPDIRTY_<SECTION>``) override the file; when such a value is invalid the problem
must name the variable, not the file the user then searches in vain. This module
only maps key paths to variables: it must not read files, validate, or print.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "QMPDIRTY_"


def env_source(key_path: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The ``QMPDIRTY_*`` variable that set ``key_path`` (``dirty_rate.interval_s``,
    ``vm[0].qmp``), if one did: ``QMPDIRTY_DIRTY_RATE__INTERVAL_S``, or a JSON
    ``QMPDIRTY_DIRTY_RATE`` / ``QMPDIRTY_VM`` that holds the key. Names match
    case-insensitively, as pydantic-settings reads them."""
    values = os.environ if environ is None else environ
    env = {k.upper(): k for k in values}
    parts: list[str | int] = [int(p) if p.isdigit() else p
                              for p in re.findall(r"[^.\[\]]+", key_path)]
    for n in range(len(parts), 0, -1):
        head = parts[:n]
        if any(isinstance(p, int) for p in head):
            continue
        name = env.get(ENV_PREFIX + "__".join(str(p).upper() for p in head))
        if name is not None and _json_holds(values[name], parts[n:]):
            return name
    return None


def _json_holds(text: str, rest: list[str | int]) -> bool:
    """``text`` (JSON) has the key path ``rest``; not JSON counts as yes (the value
    itself is then what failed)."""
    if not rest:
        return True
    try:
        node: Any = json.loads(text)
    except ValueError:
        return True
    for part in rest:
        held = (part < len(node) if isinstance(part, int) and isinstance(node, list)
                else isinstance(part, str) and isinstance(node, dict) and part in node)
        if not held:
            return False
        node = node[part]
    return True


def blame_environment(problems: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Problems whose value came from the environment name the variable."""
    out = []
    for key, message, hint in problems:
        name = env_source(key)
        out.append((key, message, hint) if name is None else
                   (f"{name} (environment, for {key})", message, f"fix or unset {name}; {hint}"))
    return out
