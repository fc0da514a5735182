"""QMP on the wire, as QEMU writes and reads it: for the lab's fake QEMUs and its client.

Not the daemon's QMP (that is ``qmpdirty/qmp/session.py`` over qemu.qmp): this module
serves the lab's fake servers (``fakeqmp``) and its client (``control.QmpControl``).
It does no I/O. What it reproduces, with the QEMU source it comes from:

* Every message QEMU sends is one JSON object written with ``", "`` and ``": "``
  (``qobject_to_json``) and ended by ``"\\r\\n"`` (``monitor_puts`` turns ``\\n`` into
  ``\\r\\n``): ``encode``.
* The greeting, ``{"QMP": {"version": <query-version>, "capabilities": ["oob"]}}``
  (``qmp_greeting``, monitor/qmp.c): ``greeting``.
* A command is ``{"execute": NAME, "arguments": {...}, "id": ANY}``; anything else
  gets QEMU's own ``GenericError`` text (``qmp_dispatch_check_obj``,
  qapi/qmp-dispatch.c): ``command_of``.
* A reply is ``{"return": VALUE}`` or ``{"error": {"class": C, "desc": D}}``, with the
  command's ``id`` copied when it had one (``qmp_dispatch``): ``reply``.
* Until ``qmp_capabilities`` succeeds every other command is refused with
  ``CommandNotFound`` "Expecting capabilities negotiation with 'qmp_capabilities'"
  (``monitor_qmp_dispatch``); a second one is refused too (``qmp_qmp_capabilities``).
* An event is ``{"event": NAME, "data": {...}, "timestamp": {"seconds": S,
  "microseconds": US}}``, with no ``data`` at all for an event without arguments
  (``qmp_event_build_dict`` and the generated ``qapi_event_send_*``): ``event``.
* Clients need not end a command with a newline (qemu.qmp does not), so the input is a
  stream of JSON values, not lines: ``Framer``.

``tests/adapters/test_fake_qmp.py`` holds these shapes against the replies and events
recorded from QEMU 10.0.2 in ``tests/data/qemu-10.0.2/``.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from qmpdirty.demo.errors import DemoError

CRLF = b"\r\n"
NEGOTIATE = "qmp_capabilities"


class ErrorReply(DemoError):
    """QEMU's error reply ``{"error": {"class": cls, "desc": desc}}``."""

    def __init__(self, cls: str, desc: str) -> None:
        super().__init__(f"{cls}: {desc}")
        self.cls = cls
        self.desc = desc

    def member(self) -> str:
        """The pre-encoded ``"error": {...}`` member of the reply."""
        return '"error": ' + json.dumps({"class": self.cls, "desc": self.desc})


def not_found(command: str) -> ErrorReply:
    """What QEMU answers a command it does not have (``do_qmp_dispatch``)."""
    return ErrorReply("CommandNotFound", f"The command {command} has not been found")


def expecting_negotiation() -> ErrorReply:
    """Any command but ``qmp_capabilities`` before negotiation (``monitor_qmp_dispatch``)."""
    return ErrorReply("CommandNotFound",
                      "Expecting capabilities negotiation with 'qmp_capabilities'")


def already_negotiated() -> ErrorReply:
    """A second ``qmp_capabilities`` (``qmp_qmp_capabilities``)."""
    return ErrorReply("CommandNotFound",
                      "Capabilities negotiation is already complete, command ignored")


def encode(message: object) -> bytes:
    """One message as QEMU writes it."""
    return json.dumps(message).encode() + CRLF


def greeting(version: Mapping[str, Any], capabilities: Iterable[str] = ("oob",)
             ) -> dict[str, Any]:
    """The greeting for a QEMU whose ``query-version`` returns ``version``."""
    return {"QMP": {"version": dict(version), "capabilities": list(capabilities)}}


def return_member(value: object) -> str:
    """The pre-encoded ``"return": ...`` member of a successful reply."""
    return '"return": ' + json.dumps(value)


def reply(member: str, command: Mapping[str, Any]) -> bytes:
    """The reply to ``command`` whose ``return`` or ``error`` member is ``member``."""
    tail = f', "id": {json.dumps(command["id"])}' if "id" in command else ""
    return ("{" + member + tail + "}").encode() + CRLF


def timestamp(at: float) -> dict[str, int]:
    """QEMU's event timestamp: whole seconds and microseconds since the epoch."""
    seconds, micro = divmod(round(at * 1e6), 1_000_000)
    return {"seconds": seconds, "microseconds": micro}


def event(name: str, data: Mapping[str, Any] | None = None, at: float | None = None
          ) -> dict[str, Any]:
    """An event message (``data`` None: an event without arguments, so no member)."""
    message: dict[str, Any] = {"event": name}
    if data is not None:
        message["data"] = dict(data)
    message["timestamp"] = timestamp(time.time() if at is None else at)
    return message


def event_time(message: Mapping[str, Any]) -> float:
    """An event's timestamp as epoch seconds."""
    stamp = message["timestamp"]
    return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6


def command_of(message: object, oob: bool = False) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of a command, or QEMU's ``ErrorReply`` for a bad one."""
    if not isinstance(message, dict):
        raise ErrorReply("GenericError", "QMP input must be a JSON object")
    name: str | None = None
    for key, value in message.items():
        if key == "execute" or (key == "exec-oob" and oob):
            if not isinstance(value, str):
                raise ErrorReply("GenericError", f"QMP input member '{key}' must be a string")
            if name is not None:
                raise ErrorReply("GenericError", f"QMP input member '{key}' clashes with "
                                 f"'{'exec-oob' if key == 'execute' else 'execute'}'")
            name = value
        elif key == "arguments":
            if not isinstance(value, dict):
                raise ErrorReply("GenericError",
                                 "QMP input member 'arguments' must be an object")
        elif key != "id":
            raise ErrorReply("GenericError", f"QMP input member '{key}' is unexpected")
    if name is None:
        raise ErrorReply("GenericError", "QMP input lacks member 'execute'")
    return name, message.get("arguments") or {}


def execute(name: str, arguments: Mapping[str, Any] | None = None, msg_id: object = None
            ) -> bytes:
    """A command as a client sends it (no trailing newline, as qemu.qmp)."""
    message: dict[str, Any] = {"execute": name}
    if arguments:
        message["arguments"] = dict(arguments)
    if msg_id is not None:
        message["id"] = msg_id
    return json.dumps(message).encode()


class Framer:
    """Bytes in, complete JSON values out, whatever the chunking (UTF-8 split included).

    A value that does not parse yet is kept until more bytes arrive.
    """

    def __init__(self) -> None:
        self._decoder = json.JSONDecoder()
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""

    def feed(self, data: bytes) -> list[Any]:
        """Every value completed by ``data``, in order."""
        self._buf += self._text.decode(data)
        buf, pos, end, out = self._buf, 0, len(self._buf), []
        while True:
            while pos < end and buf[pos] in " \t\r\n":
                pos += 1
            if pos == end:
                break
            try:
                value, pos = self._decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                break  # incomplete: wait for more bytes
            out.append(value)
        self._buf = buf[pos:]
        return out
