"""contrib/libvirt: the qemu.d hook run as libvirt runs it (fake ``systemctl`` and
``qmpdirty`` on PATH, then the real ``qmpdirty admit`` against mosquitto), and the
``<qemu:commandline>`` snippet given to a real QEMU that dials a listening socket."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.daemon_process import QMPDIRTY, write_config
from tests.system.test_admit import retain, state

pytestmark = pytest.mark.system
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "libvirt"
HOOK = CONTRIB / "qmpdirty-hook"
XML = "<domain type='kvm'><name>web1</name></domain>\n"
QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"
Hook = Callable[..., subprocess.CompletedProcess[str]]


class Fakes:
    """A bin directory with a recording ``systemctl`` and ``qmpdirty``, and settings."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "calls"
        self.calls.mkdir()
        self.settings = root / "qmpdirty-hook.conf"
        self.settings.write_text("")
        self.fake("systemctl", "")
        self.fake("qmpdirty", 'echo "blocker: a reason"\nexit "${FAKE_ADMIT_RC:-0}"\n')

    def fake(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {self.calls}/{name}.$$\n{body}')
        path.chmod(0o755)

    def configure(self, **settings: str) -> None:
        self.settings.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))

    def recorded(self, name: str) -> list[list[str]]:
        return [p.read_text().splitlines() for p in sorted(self.calls.glob(f"{name}.*"))]

    def wait_recorded(self, name: str, count: int, timeout_s: float = 5.0) -> list[list[str]]:
        deadline = time.monotonic() + timeout_s
        while len(found := self.recorded(name)) < count:
            assert time.monotonic() < deadline, f"{name} ran {len(found)} times, not {count}"
            time.sleep(0.02)
        return found


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


@pytest.fixture
def hook(fakes: Fakes) -> Hook:
    def run(*args: str, stdin: str = XML, path: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": path or f"{fakes.bin}:/usr/bin:/bin",
                       "QMPDIRTY_HOOK_CONFIG": str(fakes.settings), **(env or {})}
        return subprocess.run([str(HOOK), *args], input=stdin, capture_output=True, text=True,
                              timeout=30, check=False, env=environment)
    return run


def test_the_script_is_executable_posix_sh() -> None:
    assert os.access(HOOK, os.X_OK)
    assert HOOK.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(HOOK)], check=True)


@pytest.mark.parametrize("operation", ["started", "stopped", "migrate"])
def test_lifecycle_operations_ask_for_a_rescan(hook: Hook, fakes: Fakes, operation: str) -> None:
    result = hook("web1", operation, "begin", "-")
    assert (result.returncode, result.stdout) == (0, "")
    assert fakes.wait_recorded("systemctl", 1) == [["reload", "--no-block", "qmpdirty.service"]]
    assert fakes.recorded("qmpdirty") == []  # admit is off by default


@pytest.mark.parametrize("operation", ["prepare", "start", "release", "reconnect", "attach",
                                       "restore", ""])
def test_other_operations_do_nothing(hook: Hook, fakes: Fakes, operation: str) -> None:
    result = hook("web1", operation, "begin", "-")
    assert (result.returncode, result.stdout) == (0, "")
    time.sleep(0.2)
    assert fakes.recorded("systemctl") == []


def test_every_configured_unit_is_reloaded(hook: Hook, fakes: Fakes) -> None:
    fakes.configure(QMPDIRTY_UNITS="qmpdirty.service qmpdirty@lab.service")
    assert hook("web1", "started", "begin", "-").returncode == 0
    calls = sorted(c[-1] for c in fakes.wait_recorded("systemctl", 2))
    assert calls == ["qmpdirty.service", "qmpdirty@lab.service"]


def test_a_hanging_systemctl_never_blocks_libvirt(hook: Hook, fakes: Fakes) -> None:
    fakes.fake("systemctl", "exec sleep 5\n")
    started = time.monotonic()
    result = hook("web1", "stopped", "end", "-", stdin=XML * 20000)  # ~1 MB of XML
    assert result.returncode == 0
    assert time.monotonic() - started < 2


def test_no_systemctl_is_not_an_error(hook: Hook, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = hook("web1", "started", "begin", "-", path=f"{empty}:/nonexistent")
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.parametrize(("rc", "on_error", "expected"), [
    ("0", "allow", 0), ("1", "allow", 1), ("3", "allow", 0), ("3", "deny", 1),
    ("2", "allow", 0),
])
def test_admit_on_migrate(hook: Hook, fakes: Fakes, rc: str, on_error: str,
                          expected: int) -> None:
    fakes.configure(QMPDIRTY_ADMIT="yes", QMPDIRTY_BIN=str(fakes.bin / "qmpdirty"),
                    QMPDIRTY_ADMIT_ON_ERROR=on_error, QMPDIRTY_CONFIG="/etc/q.toml")
    result = hook("web1", "migrate", "begin", "-", env={"FAKE_ADMIT_RC": rc})
    assert result.returncode == expected, result.stderr
    assert result.stdout == ""  # libvirt would read stdout as a new domain XML
    [args] = fakes.recorded("qmpdirty")
    assert args == ["admit", "--config", "/etc/q.toml", "--timeout", "3", "--host", "+",
                    "--", "web1"]
    if expected == 1:
        assert "blocker: a reason" in result.stderr


def test_admit_runs_only_on_migrate(hook: Hook, fakes: Fakes) -> None:
    fakes.configure(QMPDIRTY_ADMIT="yes", QMPDIRTY_BIN=str(fakes.bin / "qmpdirty"))
    for operation in ("started", "stopped", "prepare"):
        assert hook("web1", operation, "begin", "-", env={"FAKE_ADMIT_RC": "1"}).returncode == 0
    assert fakes.recorded("qmpdirty") == []


def test_a_hanging_admit_is_cut_off(hook: Hook, fakes: Fakes) -> None:
    fakes.fake("qmpdirty", "exec sleep 30\n")
    fakes.configure(QMPDIRTY_ADMIT="yes", QMPDIRTY_BIN=str(fakes.bin / "qmpdirty"),
                    QMPDIRTY_ADMIT_DEADLINE="1")
    started = time.monotonic()
    result = hook("web1", "migrate", "begin", "-")
    assert result.returncode == 0  # no verdict: allowed by default
    assert time.monotonic() - started < 5
    assert "no verdict (exit 124)" in result.stderr


def test_hostile_domain_name_stays_one_argument(hook: Hook, fakes: Fakes,
                                                tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    name = f"$(touch {pwned}); `touch {pwned}`;*"
    fakes.configure(QMPDIRTY_ADMIT="yes", QMPDIRTY_BIN=str(fakes.bin / "qmpdirty"))
    assert hook(name, "migrate", "begin", "-").returncode == 0
    [args] = fakes.recorded("qmpdirty")
    assert args[-2:] == ["--", name]
    assert not pwned.exists()


def test_real_admit_refuses_a_blocked_vm(hook: Hook, fakes: Fakes, broker: Mosquitto,
                                         tmp_path: Path) -> None:
    retain(broker, {**state("gpu1", "src", blocked=True), **state("web1", "src")})
    config = write_config(tmp_path / "q.toml", {"mqtt": {"url": broker.url},
                                                "host": {"name": "dst"}})
    fakes.configure(QMPDIRTY_ADMIT="yes", QMPDIRTY_BIN=QMPDIRTY, QMPDIRTY_CONFIG=str(config))
    refused = hook("gpu1", "migrate", "begin", "-")
    assert refused.returncode == 1
    assert "refusing the incoming migration of gpu1" in refused.stderr
    assert "blocker: " in refused.stderr and "(remedy: bind a variant driver)" in refused.stderr
    allowed = hook("web1", "migrate", "begin", "-")
    assert allowed.returncode == 0, allowed.stderr
    assert (refused.stdout, allowed.stdout) == ("", "")


# --- the <qemu:commandline> snippet ------------------------------------------------------


def snippet_args() -> list[str]:
    root = ET.parse(CONTRIB / "qemu-commandline.xml").getroot()
    line = root.find(f"{QEMU_NS}commandline")
    assert line is not None
    return [arg.attrib["value"] for arg in line.findall(f"{QEMU_NS}arg")]


def test_snippet_is_the_server_mode_command_line() -> None:
    assert snippet_args() == [
        "-chardev", "socket,id=qmpdirty,path=/run/qmpdirty/qmp.sock,server=off,reconnect-ms=1000",
        "-mon", "chardev=qmpdirty,mode=control"]


@pytest.fixture
def listening() -> Iterator[tuple[socket.socket, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))
    path = directory / "qmp.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(20)
    yield server, path
    server.close()
    path.unlink()
    directory.rmdir()


def test_qemu_with_the_snippet_dials_in_and_speaks_qmp(
    listening: tuple[socket.socket, Path],
) -> None:
    server, path = listening
    args = [a.replace("/run/qmpdirty/qmp.sock", str(path)) for a in snippet_args()]
    qemu = subprocess.Popen(["qemu-system-x86_64", "-M", "none", "-display", "none",
                             "-nodefaults", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(20)
            greeting = conn.recv(4096)
        assert b'"QMP"' in greeting
    finally:
        qemu.kill()
        qemu.wait()
