"""Which ``QMPDIRTY_*`` variable set a key: problems name it, not the file (B13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpdirty.config.environment import env_source
from qmpdirty.config.load import load_config
from qmpdirty.errors import ConfigError


@pytest.mark.parametrize(("key", "environ", "source"), [
    ("dirty_rate.interval_s", {"QMPDIRTY_DIRTY_RATE__INTERVAL_S": "abc"},
     "QMPDIRTY_DIRTY_RATE__INTERVAL_S"),
    ("dirty_rate.interval_s", {"qmpdirty_dirty_rate__interval_s": "abc"},
     "qmpdirty_dirty_rate__interval_s"),  # read case-insensitively
    ("dirty_rate.interval_s", {"QMPDIRTY_DIRTY_RATE": '{"interval_s": "x"}'},
     "QMPDIRTY_DIRTY_RATE"),
    ("dirty_rate.interval_s", {"QMPDIRTY_DIRTY_RATE": '{"window_s": 2}'}, None),
    ("dirty_rate.interval_s", {"QMPDIRTY_DIRTY_RATE": "not json"}, "QMPDIRTY_DIRTY_RATE"),
    ("vm[0].qmp", {"QMPDIRTY_VM": '[{"qmp": "bad"}]'}, "QMPDIRTY_VM"),
    ("vm[1].qmp", {"QMPDIRTY_VM": '[{"qmp": "unix:/a"}]'}, None),
    ("mqtt.url", {"QMPDIRTY_DIRTY_RATE__INTERVAL_S": "abc"}, None),
    ("<file>", {}, None),
])
def test_env_source(key: str, environ: dict[str, str], source: str | None) -> None:
    assert env_source(key, environ) == source


def test_a_bad_override_names_the_variable(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "q.toml"
    path.write_text('[dirty_rate]\nwindow_s = "x"\n')
    monkeypatch.setenv("QMPDIRTY_DIRTY_RATE__INTERVAL_S", "abc")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = {key: (message, hint) for key, message, hint in info.value.problems}
    env_key = "QMPDIRTY_DIRTY_RATE__INTERVAL_S (environment, for dirty_rate.interval_s)"
    assert set(problems) == {env_key, "dirty_rate.window_s"}  # the file's own, as before
    assert "valid number" in problems[env_key][0]
    assert problems[env_key][1].startswith("fix or unset QMPDIRTY_DIRTY_RATE__INTERVAL_S; ")
