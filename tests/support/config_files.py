"""Writing a config file and reading the problems ``load_config`` finds in it, for the
config tests (the file tests and the environment and secrets tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpdirty.config.load import load_config
from qmpdirty.errors import ConfigError, QmpDirtyError

#: A password no message may echo.
SECRET = "hunter2-s3cr3t"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qmpdirty.toml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    assert isinstance(exc, QmpDirtyError)
    assert exc.source == str(path)
    assert exc.problems, "ConfigError without problems"
    for key, message, hint in exc.problems:
        assert key and message and hint, (key, message, hint)
    assert str(exc).startswith(f"{path}: {exc.problems[0][0]}: ")
    return exc.problems
