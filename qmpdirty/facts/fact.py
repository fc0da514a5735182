"""A value that may be unknown, with where it came from (pure core).

Stage: facts. A fact that could not be read is ``None`` together with a reason in
``source``, never an exception: decisions that rest on an unknown fact say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fact(Generic[T]):
    """A value and where it came from; ``value`` None means unknown, ``source`` says why."""

    value: T | None
    source: str

    @property
    def known(self) -> bool:
        return self.value is not None

    @classmethod
    def unknown(cls, reason: str) -> Fact[T]:
        return cls(None, f"unknown: {reason}")
