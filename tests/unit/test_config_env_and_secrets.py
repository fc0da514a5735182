"""Configuration (config/load.py) and the environment: env wins, no secret is ever echoed.

The file itself, good and broken: test_config_file.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from qmpdirty.config.load import Config, load_config
from qmpdirty.errors import ConfigError
from tests.support.config_files import SECRET, problems_of, write

pytestmark = pytest.mark.usefixtures("clean_env")


# --- secrets -------------------------------------------------------------------------------

LEAKY_URLS = [
    f"mqtt://user:{SECRET}@broker:1883",
    f"mqtt://user:{SECRET}@broker:99999",
    f"mqtt://user:{SECRET}@broker:port",
    f"http://user:{SECRET}@broker:1883",
    f"mqtts://{SECRET}@broker",
]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_password_in_url_is_never_echoed(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"[mqtt]\nurl = \"{url}\"\n"))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.problems)
    assert "mqtt.url" in [p[0] for p in info.value.problems]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_password_in_env_url_is_never_echoed(tmp_path: Path, url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QMPDIRTY_MQTT__URL", url)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.problems)


def test_password_file_content_is_never_echoed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"[mqtt]\nusername = \"u\"\npassword_file = \"{secret}\"\n"
                                    "keepalive_s = 1\n"))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.problems)


# --- environment overrides -----------------------------------------------------------------

FILE = """
[mqtt]
url = "mqtt://from-file:1883"
topic_prefix = "file-prefix"

[qmp]
command_timeout_s = 7.0
connect_timeout_s = 3.0
"""


def test_env_overrides_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("QMPDIRTY_MQTT__URL", "mqtts://from-env:8884")
    monkeypatch.setenv("QMPDIRTY_QMP__COMMAND_TIMEOUT_S", "1.5")
    cfg = load_config(write(tmp_path, FILE))
    assert cfg.mqtt.url == "mqtts://from-env:8884"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("from-env", 8884, True)
    assert cfg.qmp.command_timeout_s == 1.5
    # keys of the same sections that the environment does not name come from the file
    assert cfg.mqtt.topic_prefix == "file-prefix"
    assert cfg.qmp.connect_timeout_s == 3.0


def test_without_env_the_file_is_used(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FILE))
    assert (cfg.mqtt.url, cfg.qmp.command_timeout_s) == ("mqtt://from-file:1883", 7.0)


def test_env_applies_to_sections_absent_from_the_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QMPDIRTY_QMP__COMMAND_TIMEOUT_S", "9")
    cfg = load_config(write(tmp_path, ""))
    assert cfg.qmp.command_timeout_s == 9.0


@pytest.mark.parametrize(
    ("env", "key", "message"),
    [
        ("QMPDIRTY_QMP__COMMAND_TIMEOUT_S=soon", "qmp.command_timeout_s", "valid number"),
        ("QMPDIRTY_QMP__COMMAND_TIMEOUT_S=-1", "qmp.command_timeout_s", "greater than 0"),
        ("QMPDIRTY_MQTT__URL=http://broker", "mqtt.url", "mqtt://HOST"),
        ("QMPDIRTY_MQTT__KEEPALIVE_S=1", "mqtt.keepalive_s", "greater than or equal"),
        ("QMPDIRTY_DIRTY_RATE__MODE=fast", "dirty_rate.mode", "page-sampling"),
    ],
)
def test_bad_env_value_is_reported_with_its_key_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, key: str, message: str
) -> None:
    name, _, value = env.partition("=")
    monkeypatch.setenv(name, value)
    problems = problems_of(write(tmp_path, FILE))
    assert [p[0] for p in problems] == [f"{name} (environment, for {key})"]  # not the file's
    assert message in problems[0][1]


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("QMPDIRTY_VM", "unix:/run/q.sock", "vm"),
        ("QMPDIRTY_MQTT", "{not json", "mqtt"),
    ],
)
def test_unparsable_env_value_for_a_table_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    """Tables and lists are JSON in the environment; bad JSON is a ConfigError, not a crash."""
    monkeypatch.setenv(name, value)
    problems = problems_of(write(tmp_path, ""))
    assert key in [p[0] for p in problems]


def test_env_key_typo_gets_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QMPDIRTY_MQTT__URLL", "mqtt://x")
    problems = problems_of(write(tmp_path, ""))
    assert problems[0][0] == "QMPDIRTY_MQTT__URLL (environment, for mqtt.urll)"
    assert problems[0][2] == "fix or unset QMPDIRTY_MQTT__URLL; did you mean 'url'?"


def test_env_vm_list_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QMPDIRTY_VM", '[{"qmp": "tcp:h:4444", "name": "e"}]')
    cfg = load_config(write(tmp_path, ""))
    assert [(v.name, str(v.address)) for v in cfg.vm] == [("e", "tcp:h:4444")]


def test_forget_after_s_defaults_to_ten_minutes_env_overrides_and_must_be_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_config(write(tmp_path, "")).daemon.forget_after_s == 600.0
    assert load_config(write(tmp_path, "[daemon]\nforget_after_s = 0\n")
                       ).daemon.forget_after_s == 0.0  # never
    monkeypatch.setenv("QMPDIRTY_DAEMON__FORGET_AFTER_S", "2.5")
    assert load_config(write(tmp_path, "[daemon]\nforget_after_s = 60\n")
                       ).daemon.forget_after_s == 2.5
    monkeypatch.delenv("QMPDIRTY_DAEMON__FORGET_AFTER_S")
    for bad in ("-1", "inf", "nan"):
        keys = [key for key, _m, _h in problems_of(
            write(tmp_path, f"[daemon]\nforget_after_s = {bad}\n"))]
        assert keys == ["daemon.forget_after_s"], bad


def test_an_unnamed_host_is_published_under_its_short_host_name() -> None:
    short = socket.gethostname().split(".")[0]
    assert Config().host.name == short
    assert Config.model_validate({"host": {"sysfs_root": "/tmp"}}).host.name == short
    assert Config.model_validate({"host": {"name": "kvm07"}}).host.name == "kvm07"
