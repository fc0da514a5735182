"""Rendering the per-VM payloads (telemetry/render/ + schema.py): hook results, info, the
dirty rate, QMP events, tracking and blockers.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from qmpdirty.decisions.migration.estimate import DirtyEstimate
from qmpdirty.decisions.vfio.disagreement import UNSEEN
from qmpdirty.decisions.vfio.evaluate import VfioVerdict, evaluate
from qmpdirty.facts.host import HostFacts
from qmpdirty.facts.topology import VmTopology
from qmpdirty.facts.vm import DirtyRateMeasurement, QmpEvent
from qmpdirty.sinks.hooks import outcome
from qmpdirty.telemetry import render, schema
from qmpdirty.telemetry.render import vfio
from tests.support.render_inputs import (
    EVENT,
    INFO,
    MEASURED,
    NO_VFIO,
    Q35,
    QEMU_RATE,
    RUNNING,
    STAMP,
    VM,
    body,
)


def observed_only(observed: tuple[str, ...]) -> VfioVerdict:
    """An evaluation of a VM without VFIO devices whose QEMU reports ``observed``."""
    return evaluate(VmTopology(Q35, blocked_reasons=observed),
                    HostFacts())


# --- per payload ---------------------------------------------------------------------------


def hook_data() -> dict[str, Any]:
    return body(render.hook_result(STAMP, outcome(
        "vm-online", ("/bin/x",), exit_code=1, timed_out=False, error="exit status 1",
        duration_s=0.5)))


@pytest.mark.parametrize("event", ["vm-online", "qmp:GUEST_PANICKED"])
def test_hook_event_is_a_kind_or_a_qmp_event(event: str) -> None:
    data = hook_data()
    assert schema.HookResultPayload.model_validate({**data, "event": event}).event == event


@pytest.mark.parametrize("event", ["*", "migration", "qmp:", "qmp:guest_panicked",
                                   "QMP:STOP", "GUEST_PANICKED"])
def test_hook_event_refuses_what_no_hook_runs_for(event: str) -> None:
    data = hook_data()
    with pytest.raises(ValidationError):
        schema.HookResultPayload.model_validate({**data, "event": event})


def test_info_payload() -> None:
    data = body(render.info(STAMP, INFO, RUNNING, "unix:/run/q.sock", 4242))
    assert {k: data[k] for k in ("qemu_version", "uuid", "machine", "accel", "ram_bytes",
                                 "vcpus", "run_state", "role", "role_reason", "qmp", "pid",
                                 "migration_events")} == {
        "qemu_version": "10.0.2", "uuid": None, "machine": "pc-i440fx-10.0", "accel": "tcg",
        "ram_bytes": 134217728, "vcpus": 1, "run_state": "running", "role": "running",
        "role_reason": "the guest is running", "qmp": "unix:/run/q.sock", "pid": 4242,
        "migration_events": True,
    }


def test_dirty_rate_measured_payload() -> None:
    msg = render.dirty_rate_measured(STAMP, MEASURED, 120)
    data = body(msg)
    assert data["bytes_per_s"] == 60.0 * 2**20
    assert (data["mode"], data["source"], data["window_s"], data["sample_pages"]) == (
        "page-sampling", "calc-dirty-rate", 0.5, 512)
    assert data["vcpus"] is None
    assert msg.expiry_s == 120


def test_dirty_rate_measured_per_vcpu() -> None:
    m = DirtyRateMeasurement(bytes_per_s=5.0, mode="dirty-ring", window_s=1.0, sample_pages=None,
                             started_at_s=None, vcpu_bytes_per_s=((0, 2.0), (1, 3.0)))
    data = body(render.dirty_rate_measured(STAMP, m, None))
    assert data["vcpus"] == [{"id": 0, "bytes_per_s": 2.0}, {"id": 1, "bytes_per_s": 3.0}]
    assert data["sample_pages"] is None


def test_dirty_rate_during_migration_says_how_it_was_counted_and_by_whom() -> None:
    msg = render.dirty_rate_during_migration(STAMP, QEMU_RATE, None)
    data = body(msg)
    assert (data["bytes_per_s"], data["mode"], data["source"], data["window_s"]) == (
        1.5e6, "migration-bitmap", "migration", None)
    assert msg.expiry_s is None
    estimate = DirtyEstimate(2e6, "estimate", "page-sampling", "last page-sampling measurement")
    data = body(render.dirty_rate_during_migration(STAMP, estimate, 60))
    assert (data["mode"], data["source"], data["basis"]) == (
        "page-sampling", "estimate", "last page-sampling measurement")


def test_event_payload() -> None:
    msg = render.event(STAMP, QmpEvent("STOP", {}, 1795271515.833952), 3600)
    data = body(msg)
    assert msg.topic == f"{VM}/event/STOP"
    assert (data["event"], data["data"], data["qemu_ts"]) == ("STOP", {}, 1795271515.833952)
    assert msg.expiry_s == 3600
    data = body(render.event(STAMP, EVENT, None))
    assert data["data"] == {"pass": EVENT.data["pass"]}


def test_event_name_is_sanitised_in_the_topic() -> None:
    msg = render.event(STAMP, QmpEvent("A/B#", {"x": [1, "y"]}, None), None)
    assert msg.topic == f"{VM}/event/A_B_"
    assert body(msg)["event"] == "A/B#"
    assert body(msg)["data"] == {"x": [1, "y"]}


def test_tracking_payload_of_a_vm_without_vfio() -> None:
    data = body(vfio.tracking(STAMP, NO_VFIO))
    assert (data["devices"], data["containers"], data["complete"]) == ([], [], True)
    assert data["qemu_version"] == "10.0.2" and data["realize_errors"] == []


@pytest.mark.parametrize(
    ("observed", "migratable", "agree"),
    [((), True, None), (("VFIO device doesn't support migration",), False, False),
     (("a", "b"), False, None)],
)
def test_blockers_payload_from_observation_alone(observed: tuple[str, ...], migratable: bool,
                                                 agree: bool | None) -> None:
    """A VM without VFIO devices: nothing was predicted, so agreement is claimed about
    nothing (null) unless QEMU reports a VFIO blocker after all (first-use review B6)."""
    data = body(vfio.blockers(STAMP, observed_only(observed)))
    assert data["migratable"] is migratable
    assert data["observed"] == list(observed)
    assert data["predicted"] == []
    assert data["agree"] is agree  # unmodelled kinds ("a", "b") never count for or against
    assert data["unexpected"] == [o for o in observed if o.startswith("VFIO")]
    assert data["unmodelled"] == [o for o in observed if not o.startswith("VFIO")]
    assert data["unknown_facts"] == ([] if agree is not False else [
        {"device": None, "fact": "devices", "reason": UNSEEN.reason}])
