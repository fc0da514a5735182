"""What forgetting a VM sends, and which VMs the broker still remembers (pure core).

Stage: telemetry. ``forget_messages`` returns the empty retained messages that remove
every retained topic of one VM from the broker, and its Home Assistant device.
``remembered`` reads a scan of the host's retained VM subtree back into VM names,
their last ``status`` and their topics, so that the daemon can treat a VM it has no
session for (its QEMU died while the daemon was down, or it left the config) like one
whose session just ended. The daemon (``daemon/forget.py``) decides when. This module
must not do I/O, keep state, or look at a clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qmpdirty.telemetry.discovery import clear_messages
from qmpdirty.telemetry.message import Outgoing
from qmpdirty.telemetry.render.status import VmStatus, cleared
from qmpdirty.telemetry.topics import TopicKind, Topics

#: Every retained topic kind of a VM, ``status`` last (the order they are cleared in).
VM_RETAINED_KINDS: tuple[TopicKind, ...] = (
    *(k for k in TopicKind if k.scope == "vm" and k.retain and k is not TopicKind.VM_STATUS),
    TopicKind.VM_STATUS,
)


@dataclass(frozen=True, slots=True)
class RememberedVm:
    """A VM with retained topics under this host: its name, the ``status`` it has
    there (None when only other topics are left) and every topic found."""

    name: str
    status: str | None
    topics: frozenset[str]

    @property
    def state(self) -> VmStatus:
        """The state to adopt it in: ``error`` stays (its reason is retained beside it);
        anything else is ``offline``, as there is no session."""
        return "error" if self.status == "error" else "offline"

    @property
    def stale(self) -> bool:
        """Its retained ``status`` is not ``state`` (``online`` or ``unresponsive``
        claims a session; missing or unknown says nothing): ``offline`` must be
        published."""
        return self.status != self.state


def forget_messages(topics: Topics, vm: str, ha_prefix: str | None = None,
                    found: Iterable[str] = ()) -> list[Outgoing]:
    """The empty retained messages that make the broker forget ``vm`` (a topic name).

    In order: Home Assistant's discovery configs when ``ha_prefix`` is given (HA
    removes the device before its states go blank), then any other retained topic
    ``found`` under the VM's level, then every retained kind, ``status`` last: a
    consumer that sees ``status`` emptied knows the rest is gone too.
    """
    out = clear_messages(topics, vm, ha_prefix) if ha_prefix is not None else []
    base = f"{topics.prefix}/{topics.host}/vm/{vm}/"
    known = {topics.vm_topic(vm, kind) for kind in VM_RETAINED_KINDS}
    template = cleared(topics, vm, TopicKind.VM_STATUS)
    # a copy of a ``cleared`` message keeps whatever else the sink reads from one, but
    # not its kind: the topic is another one
    out += [dataclasses.replace(template, topic=topic, kind=None)
            for topic in sorted(set(found) - known) if topic.startswith(base)]
    out += [cleared(topics, vm, kind) for kind in VM_RETAINED_KINDS]
    return out


def vm_of(topics: Topics, topic: str) -> str | None:
    """The VM level of ``<prefix>/<host>/vm/<vm>/<suffix...>``; None for any other
    topic (another host, the host's own topics, nothing below the VM level)."""
    base = f"{topics.prefix}/{topics.host}/vm/"
    if not topic.startswith(base):
        return None
    name, sep, suffix = topic[len(base):].partition("/")
    return name if name and sep and suffix else None


def remembered(topics: Topics, retained: Mapping[str, bytes]) -> dict[str, RememberedVm]:
    """The VMs that ``retained`` (topic -> payload, from a scan of the host's VM
    subtree) names, by name; topics outside that subtree are ignored."""
    by_vm: dict[str, set[str]] = {}
    for topic in retained:
        name = vm_of(topics, topic)
        if name is not None:
            by_vm.setdefault(name, set()).add(topic)
    out: dict[str, RememberedVm] = {}
    for name, found in sorted(by_vm.items()):
        payload = retained.get(topics.vm_topic(name, TopicKind.VM_STATUS))
        status = payload.decode("utf-8", "replace") if payload is not None else None
        out[name] = RememberedVm(name, status, frozenset(found))
    return out
