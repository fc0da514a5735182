"""The shipped example configuration holds every key at its default, is current, and
passes ``check-config`` (README § Configuration)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from qmpdirty.config.example import example_toml, section_model
from qmpdirty.config.load import Config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "contrib" / "qmpdirty.toml.example"


def test_example_is_current() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == example_toml(Config), (
        "contrib/qmpdirty.toml.example is stale: run scripts/gen-config-example")


def _commented_keys() -> dict[str, str]:
    """``section.key`` -> the text after ``=`` of each commented key line."""
    keys: dict[str, str] = {}
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?([a-z_]+)\]\]?", line)
        if header:
            section = header.group(1)
            continue
        key = re.fullmatch(r"# ([a-z_0-9]+) = ?(.*)", line)
        if key:
            keys[f"{section}.{key.group(1)}"] = key.group(2)
    return keys


def test_every_key_is_there_at_its_default() -> None:
    shown = _commented_keys()
    expected = 0
    for section, field in Config.model_fields.items():
        model, _ = section_model(field)
        for name, sub in model.model_fields.items():
            expected += 1
            text = shown[f"{section}.{name}"]
            default = sub.get_default(call_default_factory=True)
            if sub.is_required() or default is None:
                assert text.lstrip().startswith("#"), (section, name, text)
                continue
            value = tomllib.loads(f"v = {text}")["v"]
            want = str(default) if isinstance(default, Path) else default
            assert value == want, f"{section}.{name}: example {text}, code {default!r}"
    assert len(shown) == expected


def test_uncommented_example_is_valid_toml_with_every_default() -> None:
    """Uncommenting every key that has a default gives the built-in configuration."""
    lines = [re.sub(r"^# ([a-z_0-9]+ = [^ #].*)$", r"\1", line)
             for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    data = tomllib.loads("\n".join(lines))
    assert Config.model_validate(data).model_dump() == Config().model_dump()


def test_check_config_accepts_the_example() -> None:
    done = subprocess.run([sys.executable, "-m", "qmpdirty", "check-config", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
