"""What cannot be read or published from QEMU (issue 12, item 8), in the pure core:
``wire.head_of`` finds what an unreadable message is without reading its values;
``translate.event_from`` refuses events that could not be published verbatim."""

from __future__ import annotations

import json

import pytest

from qmpdirty.errors import QmpReplyError
from qmpdirty.qmp import translate
from qmpdirty.qmp.wire import MessageHead, head_of
from qmpdirty.telemetry import render
from qmpdirty.telemetry.render import VmStamp
from qmpdirty.telemetry.topics import Topics

HUGE = b"9" * 5000
DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(("raw", "head"), [
    (b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "X", "data": {"v": '
     + HUGE + b'}}\r\n', MessageHead("X", None)),
    (b'{"return": {"v": ' + DEEP + b'}, "id": "__qmp#00003"}', MessageHead(None, "__qmp#00003")),
    (b'{"return": {"event": "inner", "id": "inner"}, "id": 5}', MessageHead(None, None)),
    (b'{"event": 7, "id": "a\\"b"}', MessageHead("", 'a"b')),
    (b'{"a": "x", "event": "E\\u00e9", "b": [' + HUGE + b']}', MessageHead("E\u00e9", None)),
    (b'{"error": {"class": "GenericError"}}', MessageHead(None, None)),
    (b'[' + DEEP + b']', MessageHead(None, None)),
])
def test_head_of_reads_only_the_top_level(raw: bytes, head: MessageHead) -> None:
    assert head_of(raw) == head


def test_head_of_a_ten_mib_line_of_brackets_is_quick() -> None:
    half = 5 * 2**20
    assert head_of(b'{"return": ' + b"[" * half + b"]" * half + b', "id": "z"}').id == "z"


def _event(data: object) -> dict[str, object]:
    return {"event": "X", "data": data}


def _nested(depth: int) -> dict[str, object]:
    value: object = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"v": value}


def test_data_as_deep_as_allowed_is_published() -> None:
    data = _nested(translate.MAX_EVENT_DEPTH)
    event = translate.event_from(_event(data))
    assert event.data == data
    msg = render.event(VmStamp(Topics.create("p", "h"), "vm", 1, 1.0), event, None)
    assert json.loads(msg.payload)["data"] == data


@pytest.mark.parametrize(("data", "why"), [
    (_nested(translate.MAX_EVENT_DEPTH + 1), "data nested deeper than 200 levels"),
    ({"v": ["ok", {"w": json.loads('"\\ud800"')}]}, "not Unicode text"),
    ({json.loads('"\\udfff"'): 1}, "not Unicode text"),
])
def test_unpublishable_data_is_a_reply_error(data: object, why: str) -> None:
    with pytest.raises(QmpReplyError, match=f"event X: .*{why}"):
        translate.event_from(_event(data))
