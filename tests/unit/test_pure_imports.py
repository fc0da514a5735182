"""The pure core loads no I/O library at runtime.

import-linter checks the imports the core writes; this checks what importing the core
actually loads (a package ``__init__`` that re-exports a shell module is invisible to
a contract on submodules). ``socket`` is not asserted: pydantic loads it through
``importlib.metadata`` and ``email.utils``, and it is not ours to use.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = [
    "qmpdirty.facts",
    "qmpdirty.decisions",
    "qmpdirty.telemetry",
    "qmpdirty.qmp.topology",
    "qmpdirty.qmp.wire",
    "qmpdirty.qmp.translate",
    "qmpdirty.qmp.arguments",
    "qmpdirty.qmp.commands",
]

IO = ["asyncio", "subprocess", "qemu.qmp", "aiomqtt", "prometheus_client", "qmpdirty.config.load"]

LOAD_ALL = """
import importlib, json, pkgutil, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package", PURE)
def test_importing_the_pure_core_loads_no_io(package: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_ALL, package],
        capture_output=True, text=True, check=True, timeout=60,
    )
    loaded = set(json.loads(done.stdout))
    assert package in loaded
    assert sorted(set(IO) & loaded) == []
