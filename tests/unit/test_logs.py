"""Under systemd every log line carries its syslog priority (``journalctl -p warning``)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from qmpdirty import logs


@pytest.mark.parametrize(("level", "priority"), [
    (logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6),
    (logging.DEBUG, 7), (25, 6), (5, 7),
])
def test_syslog_priority(level: int, priority: int) -> None:
    assert logs.syslog_priority(level) == priority


_SNIPPET = """
import logging
from qmpdirty import logs
logs.configure("debug")
log = logging.getLogger("qmpdirty.t")
log.debug("d"); log.info("i"); log.warning("w"); log.error("e")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def _stderr(env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _SNIPPET], capture_output=True, text=True,
                          env=env, timeout=30, check=True)
    return done.stderr.splitlines()


def test_journal_stream_prefixes_every_line() -> None:
    lines = _stderr({"JOURNAL_STREAM": "8:1234", "PATH": "/usr/bin"})
    assert lines[:4] == ["<7>DEBUG qmpdirty.t: d", "<6>INFO qmpdirty.t: i",
                         "<4>WARNING qmpdirty.t: w", "<3>ERROR qmpdirty.t: e"]
    assert all(line.startswith("<3>") for line in lines[4:]), lines[4:]
    assert any("ZeroDivisionError" in line for line in lines[4:])


def test_no_prefix_outside_systemd() -> None:
    lines = _stderr({"PATH": "/usr/bin"})
    assert lines and not any(line.startswith("<") for line in lines)
    assert " WARNING qmpdirty.t: w" in lines[2]
