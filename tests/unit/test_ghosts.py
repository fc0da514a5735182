"""What forgetting a VM sends and which VMs a retained scan names (telemetry.ghosts):
every retained topic kind of that VM and nothing else, built from the contract's own
TopicKind, so a kind added later is cleared too."""

from __future__ import annotations

import pytest

from qmpdirty.telemetry.discovery import clear_messages, discovery_messages
from qmpdirty.telemetry.ghosts import (
    VM_RETAINED_KINDS,
    RememberedVm,
    forget_messages,
    remembered,
    vm_of,
)
from qmpdirty.telemetry.topics import TopicKind, Topics

TOPICS = Topics.create("qmpdirty/lab", "kvm-07")
BASE = "qmpdirty/lab/kvm-07/vm"


def test_every_retained_vm_kind_is_cleared_status_last_and_nothing_else() -> None:
    msgs = forget_messages(TOPICS, "web.1")
    retained = {TOPICS.vm_topic("web.1", k) for k in TopicKind if k.scope == "vm" and k.retain}
    assert {m.topic for m in msgs} == retained
    assert len(msgs) == len(retained) == len(VM_RETAINED_KINDS)
    assert msgs[-1].topic == f"{BASE}/web.1/status"
    for msg in msgs:
        assert (msg.payload, msg.retain, msg.is_json) == (b"", True, False)
    kinds = {m.topic: k for k in TopicKind if k.scope == "vm"
             for m in msgs if m.topic == TOPICS.vm_topic("web.1", k)}
    assert all(m.qos == kinds[m.topic].qos for m in msgs)
    # records (event/*, migration/pass, hook) are not retained: nothing to clear
    assert not {TopicKind.EVENT, TopicKind.PASS, TopicKind.HOOK} & set(VM_RETAINED_KINDS)


def test_home_assistant_configs_go_first_when_a_prefix_is_given() -> None:
    msgs = forget_messages(TOPICS, "web1", "ha/disc")
    ha = clear_messages(TOPICS, "web1", "ha/disc")
    assert msgs[:len(ha)] == ha
    assert {m.topic for m in ha} == {m.topic for m in discovery_messages(TOPICS, "web1",
                                                                         "ha/disc")}
    assert len(msgs) == len(ha) + len(VM_RETAINED_KINDS)
    assert not any(m.topic.startswith("ha/") for m in forget_messages(TOPICS, "web1"))


def test_other_topics_found_under_the_vm_are_cleared_too_but_only_there() -> None:
    found = {f"{BASE}/web1/info", f"{BASE}/web1/legacy", f"{BASE}/web1/event/STOP",
             f"{BASE}/web10/legacy", "qmpdirty/lab/other/vm/web1/legacy"}
    msgs = forget_messages(TOPICS, "web1", None, found)
    topics = [m.topic for m in msgs]
    assert topics.count(f"{BASE}/web1/info") == 1
    assert f"{BASE}/web1/legacy" in topics and f"{BASE}/web1/event/STOP" in topics
    assert f"{BASE}/web10/legacy" not in topics
    assert "qmpdirty/lab/other/vm/web1/legacy" not in topics
    assert topics[-1] == f"{BASE}/web1/status"
    extra = next(m for m in msgs if m.topic == f"{BASE}/web1/legacy")
    assert (extra.payload, extra.retain, extra.qos) == (b"", True, 1)


@pytest.mark.parametrize(("topic", "vm"), [
    (f"{BASE}/web1/status", "web1"),
    (f"{BASE}/web.1/migration/summary", "web.1"),
    (f"{BASE}/web1", None),  # nothing below the VM level
    (f"{BASE}/web1/", None),
    (f"{BASE}//status", None),
    ("qmpdirty/lab/kvm-07/status", None),  # the host's own topic
    ("qmpdirty/lab/kvm-070/vm/web1/status", None),  # another host
    ("qmpdirty/kvm-07/vm/web1/status", None),  # another prefix
])
def test_vm_of(topic: str, vm: str | None) -> None:
    assert vm_of(TOPICS, topic) == vm


def test_remembered_groups_topics_by_vm_with_its_status() -> None:
    scan = {f"{BASE}/a/status": b"online", f"{BASE}/a/info": b"", f"{BASE}/b/info": b"",
            f"{BASE}/c/status": b"error", f"{BASE}/d/status": b"offline",
            "qmpdirty/lab/kvm-07/daemon": b"", "qmpdirty/lab/h2/vm/e/status": b"online"}
    found = remembered(TOPICS, scan)
    assert list(found) == ["a", "b", "c", "d"]
    assert found["a"] == RememberedVm("a", "online",
                                      frozenset({f"{BASE}/a/status", f"{BASE}/a/info"}))
    assert found["b"].status is None


@pytest.mark.parametrize(("status", "state", "stale"), [
    ("online", "offline", True),  # its QEMU died while the daemon was down
    ("unresponsive", "offline", True),
    (None, "offline", True),  # only other topics are left
    ("garbage", "offline", True),
    ("offline", "offline", False),  # the daemon stopped cleanly
    ("error", "error", False),  # its reason is still retained beside it
])
def test_the_state_a_remembered_vm_is_adopted_in(status: str | None, state: str,
                                                 stale: bool) -> None:
    vm = RememberedVm("a", status, frozenset())
    assert (vm.state, vm.stale) == (state, stale)
