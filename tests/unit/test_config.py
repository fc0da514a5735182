"""Configuration (config.py): every problem has a key path and a hint; env wins; no secrets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmpdirty.config.address import ADDRESS_HINT
from qmpdirty.config.load import Config, load_config, read_secret
from qmpdirty.errors import ConfigError, QmpDirtyError

SECRET = "hunter2-s3cr3t"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No QMPDIRTY_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("QMPDIRTY_"):
            monkeypatch.delenv(name)
    yield


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


# --- a good file ---------------------------------------------------------------------------


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg == Config()
    assert cfg.mqtt.url == "mqtt://127.0.0.1:1883"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("127.0.0.1", 1883, False)
    assert cfg.qmp.command_timeout_s == 5.0
    assert cfg.vm == []


def test_full_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(f"{SECRET}\n")
    cfg = load_config(write(tmp_path, f"""
[mqtt]
url = "mqtts://broker.example"
username = "qmpdirty"
password_file = "{secret}"
topic_prefix = "site/qmpdirty"

[host]
name = "kvm01"

[[vm]]
name = "web"
qmp = "unix:/run/qemu/web.sock"

[[vm]]
qmp = "tcp:[::1]:4444"

[server]
socket = "/run/qmpdirty/qmp.sock"
mode = "0660"

[qmp]
command_timeout_s = 2.5
enable_migration_events = false

[dirty_rate]
mode = "dirty-bitmap"
window_s = 0.5
"""))
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.example", 8883, True)
    assert cfg.mqtt.password_file == secret
    assert read_secret(secret) == SECRET
    assert cfg.host.name == "kvm01"
    assert [v.address.stem for v in cfg.vm] == ["web", "::1_4444"]
    assert cfg.vm[0].name == "web" and cfg.vm[1].name is None
    assert cfg.server.mode_bits == 0o660
    assert cfg.qmp.command_timeout_s == 2.5
    assert cfg.qmp.enable_migration_events is False
    assert (cfg.dirty_rate.mode, cfg.dirty_rate.window_s) == ("dirty-bitmap", 0.5)


# --- broken files --------------------------------------------------------------------------

BROKEN = [
    # (id, file text, key path, words in message, words in hint)
    ("syntax", "[mqtt\nurl = 1\n", "<file>", "not valid TOML", "syntax"),
    ("syntax-value", "[mqtt]\nurl = mqtt://x\n", "<file>", "not valid TOML", "line"),
    ("unknown-section", "[mqt]\nurl = \"mqtt://x\"\n", "mqt", "Extra inputs",
     "did you mean 'mqtt'?"),
    ("unknown-top-key", "log_level = \"debug\"\n", "log_level", "Extra inputs", "known keys"),
    ("typo-url", "[mqtt]\nurll = \"mqtt://x\"\n", "mqtt.urll", "Extra inputs",
     "did you mean 'url'?"),
    ("typo-timeout", "[qmp]\ncommand_timout_s = 3\n", "qmp.command_timout_s", "Extra inputs",
     "did you mean 'command_timeout_s'?"),
    ("typo-in-vm", "[[vm]]\nqmp = \"unix:/x\"\nnmae = \"a\"\n", "vm[0].nmae", "Extra inputs",
     "did you mean 'name'?"),
    ("typo-dirty-rate", "[dirty_rate]\nintervall_s = 3\n", "dirty_rate.intervall_s",
     "Extra inputs", "did you mean 'interval_s'?"),
    ("no-close-key", "[mqtt]\nzzz = 1\n", "mqtt.zzz", "Extra inputs", "known keys here: url"),
    ("str-for-int", "[mqtt]\nkeepalive_s = \"thirty\"\n", "mqtt.keepalive_s", "valid integer",
     "README"),
    ("str-for-float", "[qmp]\ncommand_timeout_s = \"fast\"\n", "qmp.command_timeout_s",
     "valid number", "README"),
    ("int-for-bool", "[dirty_rate]\nenabled = 3\n", "dirty_rate.enabled", "valid boolean",
     "README"),
    ("zero-timeout", "[qmp]\ncommand_timeout_s = 0\n", "qmp.command_timeout_s", "greater than 0",
     "README"),
    ("outbox-zero", "[mqtt]\noutbox_size = 0\n", "mqtt.outbox_size", "greater than or equal",
     "10000 is the default"),
    ("bad-mode", "[dirty_rate]\nmode = \"dirty-rings\"\n", "dirty_rate.mode", "page-sampling",
     "dirty-ring can freeze"),
    ("sample-pages-low", "[dirty_rate]\nsample_pages = 64\n", "dirty_rate.sample_pages",
     "accepts 128 to 16384 pages per GiB", "sample_budget_pages"),
    ("sample-pages-high", "[dirty_rate]\nsample_pages = 16385\n", "dirty_rate.sample_pages",
     "accepts 128 to 16384 pages per GiB", "unset (the default)"),
    ("budget-low", "[dirty_rate]\nsample_budget_pages = 100\n", "dirty_rate.sample_budget_pages",
     "greater than or equal to 1024", "262144 is the default"),
    ("windows-zero", "[dirty_rate]\nwindows = 0\n", "dirty_rate.windows",
     "greater than or equal to 1", "4 is the default"),
    ("section-not-table", "mqtt = \"mqtt://x\"\n", "mqtt", "valid dictionary", "README"),
    ("vm-not-list", "vm = \"unix:/x\"\n", "vm", "valid list", "README"),
    ("vm-without-qmp", "[[vm]]\nname = \"a\"\n", "vm[0].qmp", "Field required", ADDRESS_HINT),
    ("url-http", "[mqtt]\nurl = \"http://broker:1883\"\n", "mqtt.url", "mqtt://HOST",
     "for example url"),
    ("url-tcp", "[mqtt]\nurl = \"tcp://broker:1883\"\n", "mqtt.url", "mqtt://HOST",
     "for example url"),
    ("url-no-scheme", "[mqtt]\nurl = \"broker:1883\"\n", "mqtt.url", "mqtt://HOST",
     "for example url"),
    ("url-no-host", "[mqtt]\nurl = \"mqtt://\"\n", "mqtt.url", "mqtt://HOST", "for example url"),
    ("url-bad-port", "[mqtt]\nurl = \"mqtt://broker:99999\"\n", "mqtt.url", "bad port",
     "for example url"),
    ("url-text-port", "[mqtt]\nurl = \"mqtt://broker:abc\"\n", "mqtt.url", "bad port",
     "for example url"),
    ("url-credentials", f"[mqtt]\nurl = \"mqtt://user:{SECRET}@broker:1883\"\n", "mqtt.url",
     "credentials", "for example url"),
    ("url-user-only", "[mqtt]\nurl = \"mqtt://user@broker\"\n", "mqtt.url", "credentials",
     "for example url"),
    ("vm-port-0", "[[vm]]\nqmp = \"tcp:host:0\"\n", "vm[0].qmp", "port 1-65535", ADDRESS_HINT),
    ("vm-scheme", "[[vm]]\nqmp = \"udp:host:1\"\n", "vm[0].qmp", "unknown scheme", ADDRESS_HINT),
    ("vm-second-bad", "[[vm]]\nqmp = \"unix:/a\"\n[[vm]]\nqmp = \"/run/b.sock\"\n", "vm[1].qmp",
     "not a QMP address", ADDRESS_HINT),
    ("server-mode-int", "[server]\nmode = 660\n", "server.mode", "valid string", "quote it"),
    ("server-mode-digit", "[server]\nmode = \"0980\"\n", "server.mode", "octal", "quote it"),
    ("server-mode-words", "[server]\nmode = \"rw-rw----\"\n", "server.mode", "octal", "quote it"),
    ("server-mode-long", "[server]\nmode = \"00660\"\n", "server.mode", "octal", "quote it"),
    ("cert-without-key", "[mqtt]\ncert_file = \"/etc/ssl/c.pem\"\n", "mqtt", "go together",
     "README"),
    ("key-without-cert", "[mqtt]\nkey_file = \"/etc/ssl/k.pem\"\n", "mqtt", "go together",
     "README"),
    ("log-level", "[daemon]\nlog_level = \"verbose\"\n", "daemon.log_level", "debug", "README"),
    ("protocol", "[mqtt]\nprotocol = 5\n", "mqtt.protocol", "'5'", "README"),
]


@pytest.mark.parametrize(("text", "key", "message", "hint"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_broken_file(tmp_path: Path, text: str, key: str, message: str, hint: str) -> None:
    problems = problems_of(write(tmp_path, text))
    keys = [p[0] for p in problems]
    assert key in keys, problems
    _, got_message, got_hint = problems[keys.index(key)]
    assert message in got_message, got_message
    assert hint in got_hint, got_hint


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, """
[mqtt]
url = "http://x"
keepalive_s = 1
[[vm]]
qmp = "tcp:h:0"
[qmpp]
"""))
    assert {p[0] for p in problems} == {"mqtt.url", "mqtt.keepalive_s", "vm[0].qmp", "qmpp"}


def test_missing_file(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "nope.toml")
    assert problems == [("<file>", "no such file", problems[0][2])]
    assert "--config" in problems[0][2]


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    problems = problems_of(tmp_path)
    assert [p[0] for p in problems] == ["<file>"]
    assert problems[0][1].startswith("cannot read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[host]\nname = \"k\xe9\"\n")
    problems = problems_of(path)
    assert problems[0][:2] == ("<file>", problems[0][1])
    assert "not valid TOML" in problems[0][1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.chmod(0)
    problems = problems_of(path)
    assert problems[0][0] == "<file>" and "cannot read" in problems[0][1]


# --- files the config names ------------------------------------------------------------------


def test_password_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing-pw"
    problems = problems_of(write(tmp_path, f"[mqtt]\nusername = \"u\"\npassword_file = "
                                           f"\"{missing}\"\n"))
    assert problems == [("mqtt.password_file", f"{missing} does not exist", problems[0][2])]


def test_password_file_that_is_a_directory(tmp_path: Path) -> None:
    """A directory passes os.access(R_OK) but read_secret() fails on it at connect time."""
    problems = problems_of(write(tmp_path, f"[mqtt]\nusername = \"u\"\npassword_file = "
                                           f"\"{tmp_path}\"\n"))
    assert [p[0] for p in problems] == ["mqtt.password_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_password_file_not_readable(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET)
    secret.chmod(0)
    problems = problems_of(write(tmp_path, f"[mqtt]\nusername = \"u\"\npassword_file = "
                                           f"\"{secret}\"\n"))
    assert problems[0][:2] == ("mqtt.password_file", f"{secret} is not readable")


@pytest.mark.parametrize("key", ["ca_file", "cert_file"])
def test_tls_files_must_exist(tmp_path: Path, key: str) -> None:
    extra = "key_file = \"/nonexistent/k.pem\"\n" if key == "cert_file" else ""
    problems = problems_of(write(tmp_path, f"[mqtt]\n{key} = \"/nonexistent/x.pem\"\n{extra}"))
    assert f"mqtt.{key}" in [p[0] for p in problems]


def test_username_without_password_file(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "[mqtt]\nusername = \"u\"\n"))
    assert problems == [("mqtt.password_file", "username is set but no password_file",
                         problems[0][2])]
    assert "password_file" in problems[0][2]


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
    import socket

    short = socket.gethostname().split(".")[0]
    assert Config().host.name == short
    assert Config.model_validate({"host": {"sysfs_root": "/tmp"}}).host.name == short
    assert Config.model_validate({"host": {"name": "kvm07"}}).host.name == "kvm07"
