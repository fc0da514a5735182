"""Configuration files (config/load.py): a good file, broken ones, the files a config names.

Every problem has a key path and a hint. The environment and secrets:
test_config_env_and_secrets.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qmpdirty.config.address import ADDRESS_HINT
from qmpdirty.config.load import Config, load_config, read_secret
from tests.support.config_files import SECRET, problems_of, write

pytestmark = pytest.mark.usefixtures("clean_env")


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
