"""The drawn QMP exception tree: what ends a session and what is one failed question."""

from __future__ import annotations

import pytest

from qmpdirty.errors import (
    CommandNotAllowed,
    QmpClosedError,
    QmpCommandError,
    QmpConnectError,
    QmpError,
    QmpQueryError,
    QmpReplyError,
    QmpTimeoutError,
)


@pytest.mark.parametrize("error", [
    QmpTimeoutError("query-status: no reply within 5s"),
    QmpCommandError("qom-get", "GenericError", "Property not found"),
    QmpReplyError("query-migrate: unexpected reply"),
    CommandNotAllowed("migrate"),
])
def test_recoverable_failures_are_query_errors(error: QmpError) -> None:
    assert isinstance(error, QmpQueryError)


@pytest.mark.parametrize("error", [QmpClosedError("gone"), QmpConnectError("refused")])
def test_session_failures_are_not_query_errors(error: QmpError) -> None:
    assert not isinstance(error, QmpQueryError)
    assert isinstance(error, QmpError)
