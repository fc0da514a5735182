"""error-desc -> cause, on QEMU's own wordings (hw/vfio, backends/iommufd.c, 10.2.2)."""

from __future__ import annotations

import pytest

from qmpdirty.decisions.migration import tracker as mig
from qmpdirty.decisions.migration.errors import cause_of, error_cause
from qmpdirty.facts.events import DeviceStateSeen

PREFIX = "vfio: Could not start dirty page tracking - "


@pytest.mark.parametrize(("text", "kind", "device", "errno"), [
    (PREFIX + "0000:3b:00.1: Failed to start DMA logging: Operation not supported",
     "vfio-dma-logging-start", "0000:3b:00.1", "EOPNOTSUPP"),
    (PREFIX + "0000:3b:00.1: Failed to start DMA logging: Argument list too long",
     "vfio-dma-logging-start", "0000:3b:00.1", "E2BIG"),
    (PREFIX + "Failed to set dirty tracking flag 0x1: Invalid argument",
     "vfio-type1-dirty-tracking", None, "EINVAL"),
    (PREFIX + "IOMMU_HWPT_SET_DIRTY_TRACKING(hwpt_id 7) failed: Invalid argument",
     "iommufd-dirty-tracking", None, "EINVAL"),
    ("0000:3b:00.1: Failed to get DMA logging report, iova: 0x0, size: 0x1000: "
     "Input/output error", "vfio-dma-logging-report", "0000:3b:00.1", "EIO"),
    ("0000:3b:00.1: VFIO migration is not supported with postcopy migration",
     "vfio-postcopy", "0000:3b:00.1", None),
    ("Unable to write to socket: Broken pipe", "network", None, "EPIPE"),
])
def test_known_texts(text: str, kind: str, device: str | None, errno: str | None) -> None:
    cause = error_cause(text)
    assert cause is not None
    assert (cause.kind, cause.device, cause.errno, cause.detail) == (kind, device, errno, text)


@pytest.mark.parametrize("text", [None, "", "some new failure QEMU invents"])
def test_unknown_texts_give_no_cause(text: str | None) -> None:
    assert error_cause(text) is None


def test_vfio_device_states_fold_into_the_running_migration() -> None:
    state, _ = mig.observe(mig.TrackerState(), mig.StatusSeen("setup"), 1.0)
    state, effects = mig.observe(state, DeviceStateSeen("/machine/peripheral/h0",
                                                            "pre-copy"), 2.0)
    state, _ = mig.observe(state, DeviceStateSeen("/machine/peripheral/h1", "running"), 3.0)
    state, _ = mig.observe(state, DeviceStateSeen("/machine/peripheral/h0", "stop-copy"), 4.0)
    assert state.current is not None
    assert dict(state.current.vfio_states) == {"/machine/peripheral/h0": "stop-copy",
                                               "/machine/peripheral/h1": "running"}
    assert isinstance(effects[0], mig.MigrationChanged)
    idle, nothing = mig.observe(mig.TrackerState(), DeviceStateSeen("x", "running"), 1.0)
    assert idle == mig.TrackerState() and nothing == ()


def test_summary_payload_carries_the_cause_and_device_states() -> None:
    import json

    from qmpdirty.facts.vm import MigrationSnapshot
    from qmpdirty.telemetry import render
    from qmpdirty.telemetry.topics import Topics

    text = PREFIX + "0000:3b:00.1: Failed to start DMA logging: Operation not supported"
    m = mig.Migration(id="m1", role="source", started_ts=1.0, status="failed",
                      statuses=("setup", "failed"), snapshot=MigrationSnapshot("failed",
                                                                                error_desc=text),
                      vfio_states=(("/machine/peripheral/h0", "running"),))
    stamp = render.VmStamp(Topics.create("qmpdirty", "h"), "vm", 5, 2.0)
    body = json.loads(render.summary(stamp, m, "failed", 2.0, cause_of(m), uuid=None).payload)
    assert body["error"] == text
    assert body["error_cause"] == {"kind": "vfio-dma-logging-start", "device": "0000:3b:00.1",
                                   "errno": "EOPNOTSUPP"}
    assert body["vfio_devices"] == {"/machine/peripheral/h0": "running"}
