"""The MQTT topic layout of contract version 1 (pure core).

``<prefix>/<host>/...`` and ``<prefix>/<host>/vm/<vm>/...``; names are sanitised to
``[A-Za-z0-9_.-]`` so no VM name can add a level (``/``), a wildcard (``+``, ``#``)
or a control character to a topic. Each topic kind has one retain flag and QoS,
taken from design.md § MQTT contract. ``topic_matches`` is MQTT's filter rule, for
readers of retained state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_NAME = 128


def sanitise(name: str) -> str:
    """A topic-safe name: unsafe characters become ``_``; long names keep a hash suffix.

    Dots-only names (``.``, ``..``) become ``_`` so that no level looks like a path.
    """
    safe = _UNSAFE.sub("_", name) or "_"
    if set(safe) == {"."}:
        safe = "_" * len(safe)
    if len(safe) > MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe[: MAX_NAME - 13]}-{digest}"
    return safe


class TopicKind(Enum):
    """A topic kind: scope, path suffix, retain flag and QoS (design.md contract v1)."""

    HOST_STATUS = ("host", "status", True, 1)
    DAEMON = ("host", "daemon", True, 1)
    VM_STATUS = ("vm", "status", True, 1)
    INFO = ("vm", "info", True, 1)
    TRACKING = ("vm", "tracking", True, 1)
    BLOCKERS = ("vm", "blockers", True, 1)
    DIRTY_RATE = ("vm", "dirty_rate", True, 0)
    MIGRATION = ("vm", "migration", True, 1)
    FORECAST = ("vm", "forecast", True, 1)
    PASS = ("vm", "migration/pass", False, 1)
    SUMMARY = ("vm", "migration/summary", True, 1)
    EVENT = ("vm", "event", False, 1)
    HOOK = ("vm", "hook", False, 1)
    ERROR = ("vm", "error", True, 1)

    @property
    def scope(self) -> str:
        """``host`` (``<prefix>/<host>/...``) or ``vm`` (``.../vm/<vm>/...``)."""
        return str(self.value[0])

    @property
    def suffix(self) -> str:
        return str(self.value[1])

    @property
    def retain(self) -> bool:
        return bool(self.value[2])

    @property
    def qos(self) -> int:
        return int(self.value[3])


HOST_KINDS = frozenset(k for k in TopicKind if k.scope == "host")


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds topics for one daemon (prefix and host already sanitised)."""

    prefix: str
    host: str

    @classmethod
    def create(cls, prefix: str, host: str) -> Topics:
        """Sanitise each level of the prefix (it may hold ``/``) and the host name."""
        levels = [sanitise(p) for p in prefix.split("/") if p] or ["qmpdirty"]
        return cls(prefix="/".join(levels), host=sanitise(host))

    def host_topic(self, kind: TopicKind) -> str:
        """``<prefix>/<host>/<suffix>`` for daemon-level topics."""
        return f"{self.prefix}/{self.host}/{kind.suffix}"

    def vm_topic(self, vm: str, kind: TopicKind, event: str | None = None) -> str:
        """``<prefix>/<host>/vm/<vm>/<suffix>[/<EVENT>]``; ``vm`` must be sanitised."""
        base = f"{self.prefix}/{self.host}/vm/{vm}/{kind.suffix}"
        return f"{base}/{sanitise(event)}" if event is not None else base

    def vm_filter(self) -> str:
        """Subscription filter for everything about every VM of this host."""
        return f"{self.prefix}/{self.host}/vm/#"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching: ``+`` is one level, ``#`` the rest (MQTT 3.1.1 § 4.7)."""
    levels = topic.split("/")
    for n, part in enumerate(topic_filter.split("/")):
        if part == "#":
            return True
        if n >= len(levels) or part not in ("+", levels[n]):
            return False
    return len(levels) == len(topic_filter.split("/"))
