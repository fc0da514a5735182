"""The ``[hooks]`` and ``[[hook]]`` tables, as pydantic models (stage: config; no I/O).

Split out of ``sections.py``: what a hook may be fired for (``HookKind``) and what an
entry may name (``HookEvent``), the worker pool's settings, and one hook's command
and timeout. Unknown keys are rejected; the runner is ``sinks.hooks``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from qmpdirty.config.sections import _Section

#: What the daemon fires hooks for (``sinks.hooks.HookRunner``).
HookKind = Literal["migration-status", "blockers-changed", "tracking-changed",
                   "forecast-negative", "vm-online", "vm-offline"]
#: What ``[[hook]] event`` may name: one kind, or ``*`` for every kind.
HookEvent = Literal[HookKind, "*"]
COMMAND_HINT = 'command = ["/usr/local/bin/on-migration", "--flag"] (a list; run without a shell)'


class HooksConfig(_Section):
    """``[hooks]``: the hook runner's worker pool, queue and default timeout."""

    max_concurrent: int = Field(default=4, ge=1, le=64)
    queue_size: int = Field(default=100, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=3600)


class HookConfig(_Section):
    """``[[hook]]``: one executable run (without a shell) on one kind of event."""

    event: HookEvent
    command: list[str] = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("command", mode="before")
    @classmethod
    def _command_is_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError("must be a list of strings, not one string: no shell splits it")
        return value

    @field_validator("command")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        if not value[0].startswith("/"):
            raise ValueError("the executable must be an absolute path (PATH is not searched)")
        if any("\0" in arg for arg in value):
            raise ValueError("arguments cannot contain NUL characters")
        return value

