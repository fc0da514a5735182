"""Hook scripts written for a test, and what they leave behind (records, processes), for
the HookRunner tests with real subprocesses (dispatch, faults and the runner's stop)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qmpdirty.sinks.hooks import HookOutcome, HookRunner
from tests.support.fleet_payloads import info_model

Result = tuple[str, str, tuple[str, ...], HookOutcome]
Start = Callable[..., Awaitable[tuple[HookRunner, list[Result]]]]


#: What ``vm-online`` hooks are handed (their stdin is not what these tests are about).
INFO = info_model("testhost", "a")


def script(path: Path, body: str, interpreter: str = "/bin/sh") -> Path:
    path.write_text(f"#!{interpreter}\n{body}")
    path.chmod(0o755)
    return path


def recorder_hook(tmp_path: Path) -> Path:
    """A hook that writes its stdin, environment and argv to ``<out>/<pid>.json``."""
    return script(tmp_path / "record.py", (
        "import json, os, sys\n"
        "doc = {'stdin': sys.stdin.read(), 'env': dict(os.environ), 'argv': sys.argv[1:]}\n"
        "out = os.path.join(sys.argv[1], f'{os.getpid()}.json')\n"
        "with open(out + '.tmp', 'w') as f: json.dump(doc, f)\n"
        "os.rename(out + '.tmp', out)\n"
    ), interpreter=sys.executable)


async def until(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return value


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody has reaped yet)."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def alive(pid: int) -> bool:
    return not gone(pid)


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
