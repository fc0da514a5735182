"""What a newcomer met first, through the real CLI: a closed stdout (B11),
``check-config --config`` (B12), bad environment overrides (B13), the topic root
(B14), ``--help`` (B15), QEMU's pid in client mode and "1 vCPU" from ``probe``
(B19, B21)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from qmpdirty.demo.lab.daemon_process import QMPDIRTY, sock
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm

MTREE = Path(__file__).resolve().parents[1] / "data" / "mtree" / "q35-vga-ivshmem.txt"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.upper().startswith("QMPDIRTY_")}


def qmpdirty(*argv: str, env: dict[str, str] | None = None,
             stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QMPDIRTY, *argv], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=60, check=False, env={**CLEAN_ENV, **(env or {})})


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n[host]\nname = "kvm07"\n')
    return path


@pytest.mark.parametrize("argv", [
    ("check-config", "{good}"),
    ("ranges", "--mtree", str(MTREE), "--qemu-version", "10.0", "--json"),
    ("ranges", "--mtree", str(MTREE), "--qemu-version", "10.0"),
    ("--help",),
    ("--version",),
], ids=["check-config", "ranges-json", "ranges", "help", "version"])
def test_a_closed_stdout_ends_quietly(argv: tuple[str, ...], good: Path) -> None:
    """B11 (``| head``): no traceback, no "Exception ignored"; exit 1 when output was
    lost (argparse's own --help and --version exit 0 as before)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte
    try:
        out = qmpdirty(*(a.format(good=good) for a in argv), stdout=write)
    finally:
        os.close(write)
    assert out.stderr == "", out.stderr
    assert out.returncode == (0 if argv[0].startswith("--") else 1)


def test_check_config_takes_config_like_run_and_admit(good: Path, tmp_path: Path) -> None:
    """B12: ``--config`` was refused although check-config's own hint named it."""
    by_option = qmpdirty("check-config", "--config", str(good))
    assert by_option.returncode == 0 and f"{good}: OK" in by_option.stdout, by_option.stderr
    assert qmpdirty("check-config", str(good), "--config", str(good)).returncode == 0
    other = tmp_path / "other.toml"
    both = qmpdirty("check-config", str(good), "--config", str(other))
    assert both.returncode == 2 and "give one" in both.stderr
    missing = qmpdirty("check-config", "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "none.toml" in missing.stderr
    assert "no such file" in missing.stderr and "Traceback" not in missing.stderr
    helped = qmpdirty("check-config", "--help")
    assert "--config PATH" in helped.stdout and "the config file" in helped.stdout


@pytest.mark.parametrize(("name", "value", "key"), [
    ("QMPDIRTY_DIRTY_RATE__INTERVAL_S", "abc", "dirty_rate.interval_s"),
    ("QMPDIRTY_DIRTY_RATE", '{"interval_s": "abc"}', "dirty_rate.interval_s"),
    ("QMPDIRTY_MQTT__PASSWORD_FILE", "/nonexistent/pw", "mqtt.password_file"),
    ("QMPDIRTY_VM", '[{"qmp": "nope"}]', "vm[0].qmp"),
])
def test_a_bad_environment_override_is_named(name: str, value: str, key: str,
                                             good: Path) -> None:
    """B13: the problem was blamed on the file; it names the variable now."""
    for argv in (("check-config", str(good)), ("run", "--config", str(good))):
        out = qmpdirty(*argv, env={name: value})
        assert out.returncode == 2, out.stderr
        assert f"{name} (environment, for {key})" in out.stderr, out.stderr
        assert f"fix or unset {name}" in out.stderr and "Traceback" not in out.stderr


def test_check_config_shows_the_topic_root_and_what_was_sanitised(
    tmp_path: Path, good: Path
) -> None:
    """B14: the daemon published under a sanitised prefix and host, silently."""
    clean = qmpdirty("check-config", str(good))
    assert "topics qmpdirty/kvm07/…" in clean.stdout and clean.stderr == ""
    path = tmp_path / "h.toml"
    path.write_text('[host]\nname = "my host/1"\n[mqtt]\ntopic_prefix = "a/#/b"\n')
    out = qmpdirty("check-config", str(path))
    assert out.returncode == 0
    assert "topics a/_/b/my_host_1/…" in out.stdout
    assert "warning: mqtt.topic_prefix 'a/#/b' is published as 'a/_/b'" in out.stderr
    assert "warning: host name 'my host/1' is published as 'my_host_1'" in out.stderr
    assert "subscribe to a/_/b/my_host_1/#" in out.stderr


def test_help_lists_every_command_and_the_exit_codes() -> None:
    """B15: the description was a docstring with RST backticks, naming 4 of 6 commands."""
    out = qmpdirty("--help")
    assert out.returncode == 0 and "``" not in out.stdout
    description = out.stdout.split("positional arguments", 1)[0]
    for command in ("run", "check-config", "probe", "ranges", "admit", "demo"):
        assert command in description
    text = " ".join(out.stdout.split())
    assert "exit codes: 0 success; 1 runtime failure" in text
    assert "3 cannot tell" in text


def test_probe_shows_qemus_pid_and_counts_vcpus(
    lab_vm: Callable[[QemuSpec], QemuVm], tmp_path: Path
) -> None:
    """B19: ``info.pid`` was null in client mode; B21: "1 vCPUs"."""
    qmp = sock(tmp_path, "pid")
    vm = lab_vm(QemuSpec(name="pidvm", qmp_servers=(qmp,), rate_mib=1))
    vm.wait_qmp()
    out = qmpdirty("probe", "--qmp", f"unix:{qmp}", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["info"]["pid"] == vm.pid
    human = qmpdirty("probe", "--qmp", f"unix:{qmp}")
    assert human.returncode == 0 and "  1 vCPU, 256 MiB RAM" in human.stdout, human.stdout
