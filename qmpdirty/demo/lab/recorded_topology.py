"""A recorded topology gather, answering a sans-I/O query's requests (lab, no socket).

``RecordedTopology`` reads one recording of ``tests/data/topology/record_topology.py``
(every command a gather sent to a real QEMU and QEMU's reply, with every object's
``qom-list-get`` properties) and answers ``(command, arguments)`` as ``exchange.drive``
asks: the recorded reply, or what that QEMU would say of a request it was not sent (a
property it lacks, a ``qom-list-get`` of recorded objects, else ``DeviceNotFound``);
``misses`` logs every request not recorded. The unit tests, the fuzzer and the
scripted-server adapter test answer from it, and so from the same recording the same
way. Must not: invent a reply shape, or hold a socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qmpdirty.qmp.topology.exchange import Failed, Reply, Returned

Arguments = Mapping[str, object] | None


class RecordedTopology:
    """Answers from a recording; ``overrides`` (command -> reply, a plain value is a
    ``Returned``) win; ``asked`` logs every request, ``misses`` the unrecorded ones."""

    def __init__(self, path: Path, **overrides: object) -> None:
        self.doc: dict[str, Any] = json.loads(path.read_text())
        self.replies: dict[str, Reply] = {
            self.key(e["execute"], e["arguments"]):
                Failed(e["error"]["class"], e["error"]["desc"]) if "error" in e
                else Returned(e["return"])
            for e in self.doc["transcript"]
        }
        self.objects: dict[str, list[dict[str, Any]]] = self.doc["objects"]
        self.overrides = overrides
        self.asked: list[str] = []
        self.misses: list[str] = []

    @property
    def transcript(self) -> list[str]:
        """Every recorded request, sorted (compare with ``sorted(asked)``)."""
        return sorted(self.replies)

    @staticmethod
    def key(command: str, arguments: Arguments) -> str:
        return json.dumps([command, dict(arguments or {})], sort_keys=True)

    def recorded(self, command: str, arguments: Arguments) -> Reply | None:
        """QEMU's recorded reply to exactly this request, if it was sent."""
        return self.replies.get(self.key(command, arguments))

    def __call__(self, command: str, arguments: Arguments) -> object:
        """``answer``, logged."""
        key = self.key(command, arguments)
        self.asked.append(key)
        if command not in self.overrides and key not in self.replies:
            self.misses.append(key)
        return self.answer(command, arguments)

    def answer(self, command: str, arguments: Arguments) -> object:
        """The override, the recorded reply, or what that QEMU says of a request a gather
        of another version sends; logs nothing (a fuzzer asks millions)."""
        if command in self.overrides:
            return self.overrides[command]
        if (reply := self.recorded(command, arguments)) is not None:
            return reply
        args = dict(arguments or {})
        if command == "qom-get":  # a property the recorded gather did not read
            return Failed("GenericError",
                          f"Property '{args['path']}.{args['property']}' not found")
        paths = args.get("paths")
        if command == "qom-list-get" and isinstance(paths, list) \
                and all(p in self.objects for p in paths):
            return Returned([{"properties": self.objects[p]} for p in paths])
        return Failed("DeviceNotFound", f"{command}: nothing recorded")
