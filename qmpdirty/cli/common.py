"""What every ``qmpdirty`` command shares (shell): exit codes, the event loop, the
read-only QMP policy, config problems on stderr, sizes in MiB.

Stage: cli. Each piece is written once here and imported by the command modules
(``run``, ``check``, ``probe``, ``ranges``, ``admit``). This module must not parse
arguments or know any one command. The event loop is chosen here and only here.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from qmpdirty.config.load import Config, load_config
from qmpdirty.errors import ConfigError
from qmpdirty.qmp.commands import CommandPolicy

T = TypeVar("T")

#: Exit codes. ``admit`` gives 1 for "not admitted" and 3 when it cannot tell.
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNKNOWN: Final = 3

#: Queries (and the read-only HMP line, ``commands.READ_ONLY_HMP``) only, whatever the
#: config says: what ``probe`` and ``ranges`` send.
READ_ONLY = CommandPolicy(enable_migration_events=False, measure_dirty_rate=False)

MIB: Final = 1 << 20


class Runner(Protocol):
    """Runs a coroutine to completion on an event loop (``run_loop``; a stub in tests)."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


def run_loop(coro: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """Run ``coro`` on the chosen event loop (uvloop unless told otherwise)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def print_problems(exc: ConfigError) -> None:
    """Every problem of a configuration, with its key path and hint, on stderr."""
    print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
    for key, message, hint in exc.problems:
        print(f"  {key}: {message}\n    hint: {hint}", file=sys.stderr)


def load_or_print(path: Path) -> Config | None:
    """The configuration at ``path``; None when it has problems (printed)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print_problems(exc)
        return None


def mib(n: float, places: int = 0) -> str:
    """``n`` bytes in MiB with ``places`` decimals: ``mib(3 << 20)`` is ``3 MiB``."""
    return f"{n / MIB:.{places}f} MiB"
