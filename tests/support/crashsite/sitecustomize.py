"""Test-only: a bug on SIGHUP, to crash the real daemon from the inside (never installed).

``tests/system/test_sink_faults.py`` puts this directory on the daemon's PYTHONPATH, so
Python imports it at start-up. It replaces ``qmpdirty.config.load.load_config`` (before the
daemon imports it) with one that works once, at start-up, and raises on the next call,
the re-read SIGHUP asks for: an unexpected exception escapes the daemon's main task,
as a bug would. Nothing in the product knows about it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import qmpdirty.config.load

_real_load = qmpdirty.config.load.load_config
_calls = itertools.count()


def _load_then_fail(path: Path, *args: Any, **kwargs: Any) -> qmpdirty.config.load.Config:
    if next(_calls) > 0:
        raise RuntimeError("injected: a bug on SIGHUP")
    return _real_load(path, *args, **kwargs)


qmpdirty.config.load.load_config = _load_then_fail
