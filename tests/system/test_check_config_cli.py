"""Every broken config of the unit table through the real CLI (issue 6, item 3): exit 2,
the key path and the hint on stderr, nothing on stdout, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qmpdirty.demo.lab.daemon_process import QMPDIRTY
from tests.unit.test_config_file import BROKEN


@pytest.mark.parametrize(("text", "key", "message", "hint"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_check_config_and_run_exit_2_with_key_and_hint(
    text: str, key: str, message: str, hint: str, tmp_path: Path
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    for argv in ([QMPDIRTY, "check-config", str(path)],
                 [QMPDIRTY, "run", "--config", str(path)]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 2, (argv[1], out.stdout, out.stderr)
        assert key in out.stderr and message in out.stderr and hint in out.stderr, out.stderr
        assert out.stdout == "" and "Traceback" not in out.stderr
