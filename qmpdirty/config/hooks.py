"""The ``[hooks]`` and ``[[hook]]`` tables, as pydantic models (stage: config; no I/O).

Split out of ``sections.py``: what a hook may be fired for (``HookKind``, or a QMP
event as ``qmp:NAME``) and what an entry may name (``HookEvent``), the worker pool's
settings, and one hook's command, timeout and ``data`` filter. Unknown keys are
rejected, and a bad event name gets a message that says what was meant. Whether an
event passes a filter is decided in ``decisions.migration.hooks_due``; the runner is
``sinks.hooks``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from typing import Literal, NewType, get_args

from pydantic import Field, JsonValue, ValidationInfo, field_validator

from qmpdirty.config.sections import _Section

#: The kinds whose hooks read a payload exactly as it was published on MQTT.
PublishedHookKind = Literal["migration-status", "blockers-changed", "tracking-changed",
                            "forecast-negative"]
#: What the daemon fires hooks for (``sinks.hooks.HookRunner``): ``vm-online`` hooks read
#: the ``info`` payload, ``vm-offline`` hooks a ``sinks.hook_input.VmOfflineInput``.
HookKind = Literal[PublishedHookKind, "vm-online", "vm-offline"]
#: What ``[[hook]] event`` may name: one kind, or ``*`` for every kind.
HookEvent = Literal[HookKind, "*"]
#: ``[[hook]] event = "qmp:NAME"``: a hook on the QMP event ``NAME``, as QEMU sent it.
QMP_PREFIX = "qmp:"
#: A QMP event's name: upper-case letters, digits and ``_`` (qapi/*.json, e.g.
#: ``GUEST_PANICKED``, ``BLOCK_IO_ERROR``, ``VFIO_MIGRATION``).
QMP_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
#: ``qmp:`` and a valid QMP event name (``qmp_hook_event`` makes one).
QmpHookEvent = NewType("QmpHookEvent", str)
#: A ``QmpHookEvent`` as a pattern (JSON Schema's, for the ``hook`` payload).
QMP_HOOK_EVENT_PATTERN = f"^{QMP_PREFIX}{QMP_EVENT_NAME.pattern}$"
#: What one run is for: a kind, or a QMP event (``QMPDIRTY_EVENT``, the ``hook`` payload).
HookTrigger = HookKind | QmpHookEvent
COMMAND_HINT = 'command = ["/usr/local/bin/on-migration", "--flag"] (a list; run without a shell)'
_EXAMPLE = '"qmp:GUEST_PANICKED"'


def qmp_hook_event(name: str) -> QmpHookEvent:
    """``qmp:NAME`` for the QMP event ``name`` (the ``event`` of the hooks it runs)."""
    return QmpHookEvent(QMP_PREFIX + name)


def qmp_event_name(event: str) -> str | None:
    """``NAME`` of a ``qmp:NAME`` event; None for a kind or ``*``."""
    return event.removeprefix(QMP_PREFIX) if event.startswith(QMP_PREFIX) else None


def _event_problem(value: str) -> str | None:
    """Why ``value`` cannot be a ``[[hook]] event``, with what was probably meant."""
    if value in get_args(HookKind) or value == "*":
        return None
    if value[:len(QMP_PREFIX)].lower() != QMP_PREFIX:
        kinds = ", ".join(get_args(HookKind))
        close = difflib.get_close_matches(value, get_args(HookKind), n=1)
        meant = (f': did you mean "{close[0]}"?' if close
                 else f'; for the QMP event {value}, write "{QMP_PREFIX}{value}"'
                 if QMP_EVENT_NAME.fullmatch(value) else "")
        return f'must be one of {kinds}, "*", or "qmp:NAME" for a QMP event{meant}'
    name = value[len(QMP_PREFIX):]
    if QMP_EVENT_NAME.fullmatch(name):
        return None if value.startswith(QMP_PREFIX) else (
            f'the prefix is lower case: did you mean "{QMP_PREFIX}{name}"?')
    if not name.strip():
        return f"names no QMP event: write qmp: and the event's name, e.g. {_EXAMPLE}"
    guess = name.strip().upper().replace("-", "_")
    if QMP_EVENT_NAME.fullmatch(guess):
        return (f"QMP event names are written as QEMU sends them, upper case with _: "
                f'did you mean "{QMP_PREFIX}{guess}"?')
    return (f"{name!r} is not a QMP event name (upper-case letters, digits and _, "
            f"starting with a letter), e.g. {_EXAMPLE}")


def _toml_only(value: object, where: str = "") -> None:
    """Raise for what TOML can say and QEMU's JSON cannot (dates, times, nan, inf)."""
    if isinstance(value, dt.date | dt.time):
        raise ValueError(f"{where or 'the value'} is a TOML date or time, which a QMP event "
                         "never holds: quote it if the event has that text")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'the value'} is {value}, which JSON cannot hold")
    if isinstance(value, dict):
        for key, item in value.items():
            _toml_only(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _toml_only(item, f"{where}[{n}]")


class HooksConfig(_Section):
    """``[hooks]``: the hook runner's worker pool, queue and default timeout."""

    max_concurrent: int = Field(default=4, ge=1, le=64)
    queue_size: int = Field(default=100, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=3600)


class HookConfig(_Section):
    """``[[hook]]``: one executable run (without a shell) on one kind of event, or on a
    QMP event (``qmp:NAME``, optionally only when its ``data`` matches)."""

    event: HookEvent | QmpHookEvent
    command: list[str] = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    data: dict[str, JsonValue] | None = Field(
        default=None, description="qmp:NAME hooks only: run only when each key equals that\n"
        "member of the event's data (top-level keys, equal as JSON values)")

    @field_validator("event", mode="before")
    @classmethod
    def _event(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f'must be a string, e.g. "migration-status" or {_EXAMPLE}')
        if (problem := _event_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _data_is_json(cls, value: object) -> object:
        _toml_only(value)
        return value

    @field_validator("data")
    @classmethod
    def _data_needs_qmp(cls, value: dict[str, JsonValue] | None,
                        info: ValidationInfo) -> dict[str, JsonValue] | None:
        event = info.data.get("event")  # absent when the event itself was refused
        if value is not None and isinstance(event, str) and qmp_event_name(event) is None:
            raise ValueError(f"only a QMP event's hook has a data filter, and event = "
                             f'"{event}" is not one: name one as "qmp:NAME", or drop data')
        return value

    @property
    def qmp_event(self) -> str | None:
        """The QMP event's name for a ``qmp:NAME`` hook; None for the others."""
        return qmp_event_name(self.event)

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

