"""What every payload of MQTT contract version 1 carries (pure core).

Stage: telemetry. The base models of ``schema`` (which re-exports them): ``schema`` (the
contract version), ``ts``, ``host``, ``seq`` and, for VM topics, ``vm``. Must not do I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    """Fields every JSON payload has."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              json_schema_serialization_defaults_required=True)

    schema_: Literal[1] = Field(default=1, alias="schema", description="contract version")
    ts: float = Field(description="when qmpdirty produced this payload, epoch seconds")
    host: str = Field(description="host name as used in the topic")
    seq: int = Field(ge=0, description="per-VM (host: per-daemon) counter, increasing per run")


class VmPayload(Payload):
    vm: str = Field(description="VM name as used in the topic")
