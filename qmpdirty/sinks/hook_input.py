"""What a ``vm-offline`` hook reads on stdin (shell, a sink's input model).

Stage: sink. Every other hook event gets the payload the daemon publishes on MQTT;
``vm-offline`` has none (the VM's ``status`` is plain text), so ``sinks.hooks``
builds this object: when and why the session ended, and the VM's last ``info``
payload. ``offline_input`` is pure: it takes the time and the facts as arguments.
This module must not do I/O, nor invent facts: an ``info`` it was not given is null.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qmpdirty.telemetry.schema import InfoPayload

#: Why a VM went offline: the daemon is stopping (QEMU may well run on), or the QMP
#: session ended (QEMU exited or closed the monitor, or the daemon stopped watching
#: the VM after a reload or a discovery rescan).
OfflineReason = Literal["daemon-stopping", "session-ended"]


class VmOfflineInput(BaseModel):
    """The JSON a ``vm-offline`` hook reads on stdin (docs/hooks.md § Events)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal[1] = Field(default=1, alias="schema",
                                description="contract version")
    ts: float = Field(description="when the session ended, epoch seconds")
    host: str = Field(description="host name as used in topics")
    vm: str = Field(description="VM name as used in topics")
    event: Literal["vm-offline"] = "vm-offline"
    reason: OfflineReason
    info: InfoPayload | None = Field(description="the VM's last info payload (the one "
                                     "its vm-online hooks got); null when unknown")


def offline_input(*, ts: float, host: str, vm: str, reason: OfflineReason,
                  info: InfoPayload | None) -> VmOfflineInput:
    """The ``vm-offline`` stdin object, typed until ``sinks.hooks`` writes it out."""
    return VmOfflineInput(ts=ts, host=host, vm=vm, reason=reason, info=info)
