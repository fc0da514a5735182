"""QMP events as typed observations (pure core).

Stage: facts. ``qmp.translate.observation_from`` turns every QMP event into exactly
one of these, once, at the boundary; the daemon dispatches on their type (``match``)
and never reads an event's name or ``data`` itself. An event without the fields its
kind must carry is an ``OtherEvent``: it is still published verbatim, nothing more.
No I/O; nothing here knows about sessions, tasks or MQTT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Events after which the run state (and so ``info``) may have changed.
RunStateEvent = Literal[
    "STOP", "RESUME", "SHUTDOWN", "RESET", "SUSPEND", "WAKEUP", "POWERDOWN", "GUEST_PANICKED",
]
#: Events after which the VFIO topology (devices, memory map) may have changed.
#: QEMU emits DEVICE_DELETED but no DEVICE_ADDED (``facts.qemu.LAST_WITHOUT_DEVICE_ADDED``;
#: ``daemon.vfio`` lists the device containers instead).
TopologyEvent = Literal["DEVICE_ADDED", "DEVICE_DELETED", "MEMORY_DEVICE_SIZE_CHANGE"]


@dataclass(frozen=True, slots=True)
class MigrationStatusSeen:
    """``MIGRATION``: the migration's new status (None when the event carried none)."""

    status: str | None


@dataclass(frozen=True, slots=True)
class MigrationPassSeen:
    """``MIGRATION_PASS``: QEMU's pass counter (its dirty-sync count) moved on."""

    pass_no: int


@dataclass(frozen=True, slots=True)
class DeviceStateSeen:
    """``VFIO_MIGRATION`` (9.1+, ``migration-events=on``): one device's migration state.

    ``device`` is the QOM path, else the device id. The migration tracker takes this
    value as it is (it needs nothing polled with it).
    """

    device: str
    state: str


@dataclass(frozen=True, slots=True)
class RunStateChanged:
    """The guest's run state may have changed (``STOP``, ``RESUME``, ``SHUTDOWN``...)."""

    event: RunStateEvent


@dataclass(frozen=True, slots=True)
class TopologyChanged:
    """A device or memory device came, went or changed size."""

    event: TopologyEvent


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Any other event: published verbatim, and that is all."""

    name: str


EventObservation = (
    MigrationStatusSeen | MigrationPassSeen | DeviceStateSeen | RunStateChanged
    | TopologyChanged | OtherEvent
)
