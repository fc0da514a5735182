"""A value that may be unknown, with where it came from and how it is known (pure core).

Stage: facts. A fact that could not be read is ``None`` together with a reason in
``source``, never an exception: decisions that rest on an unknown fact say so.

``basis`` says how the value was reached (README § MQTT contract, "basis"):

* ``host``: read: from sysfs/debugfs, or a QOM property of the VM over QMP;
* ``qemu``: inferred from QEMU's observed state (``query-migrate`` ``blocked-reasons``,
  or a device that QEMU realized at all), ``decisions/vfio/inference.py``;
* ``driver``: known behaviour of the bound driver: the variant-driver table
  (``decisions/vfio/drivers.py``) or what the operator stated in ``[[device_caps]]``;
* ``assumed``: nobody could know it: a default chosen for an unknown fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

Basis = Literal["host", "qemu", "driver", "assumed"]
#: Strongest first: a decision is only as good as the weakest fact it rests on.
BASES: tuple[Basis, ...] = ("host", "qemu", "driver", "assumed")


@dataclass(frozen=True, slots=True)
class Fact(Generic[T]):
    """A value and where it came from; ``value`` None means unknown, ``source`` says why."""

    value: T | None
    source: str
    basis: Basis = "host"

    @property
    def known(self) -> bool:
        return self.value is not None

    @classmethod
    def unknown(cls, reason: str) -> Fact[T]:
        return cls(None, f"unknown: {reason}", "assumed")


def weakest(bases: list[Basis]) -> Basis:
    """The weakest of ``bases`` (``host`` for none: nothing rested on anything unread)."""
    return max(bases, key=BASES.index, default="host")
