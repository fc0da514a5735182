"""sd_notify client against a real datagram socket: exact bytes on the wire, no-op and errors."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qmpdirty.sdnotify import SystemdNotifier


@dataclass(frozen=True)
class Receiver:
    """A bound datagram socket standing in for systemd, and the NOTIFY_SOCKET naming it."""

    sock: socket.socket
    env_value: str

    def recv(self) -> bytes:
        return self.sock.recv(4096)


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A path in a short temp dir (sun_path is 108 bytes) and an abstract ``@name``."""
    with (
        tempfile.TemporaryDirectory(prefix="sdn") as tmp,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.settimeout(2.0)
        if request.param == "path":
            path = str(Path(tmp) / "notify")
            sock.bind(path)
            yield Receiver(sock, path)
        else:
            name = f"qmpdirty-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            yield Receiver(sock, "@" + name)


def test_ready_sends_ready_and_status(receiver: Receiver) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": receiver.env_value})
    assert notifier.enabled
    assert notifier.ready("watching 3 VMs") is True
    assert receiver.recv() == b"READY=1\nSTATUS=watching 3 VMs"


def test_status_watchdog_stopping_exact_datagrams(receiver: Receiver) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": receiver.env_value})
    assert notifier.status("broker down, retrying") is True
    assert notifier.watchdog() is True
    assert notifier.stopping("shutting down") is True
    assert receiver.recv() == b"STATUS=broker down, retrying"
    assert receiver.recv() == b"WATCHDOG=1"
    assert receiver.recv() == b"STOPPING=1\nSTATUS=shutting down"


def test_status_cannot_inject_assignments(receiver: Receiver) -> None:
    """VM names come from QEMU: a newline must not become MAINPID= or READY=."""
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": receiver.env_value})
    assert notifier.status("vm\nMAINPID=1\r\0x") is True
    assert receiver.recv() == b"STATUS=vm MAINPID=1  x"


@pytest.mark.parametrize("value", [None, "", "@", "relative/path", "vsock:2:1234"])
def test_no_usable_socket_is_a_noop(value: str | None) -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    if value is not None:
        env["NOTIFY_SOCKET"] = value
    notifier = SystemdNotifier.from_env(env)
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None  # nothing to ping
    assert notifier.ready("up") is True
    assert notifier.status("x") is True
    assert notifier.watchdog() is True
    assert notifier.stopping("bye") is True


def test_send_error_returns_false_instead_of_raising() -> None:
    with tempfile.TemporaryDirectory(prefix="sdn") as tmp:
        missing = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(Path(tmp) / "gone")})
        unbound = SystemdNotifier.from_env({"NOTIFY_SOCKET": f"@qmpdirty-{uuid.uuid4().hex}"})
        for notifier in (missing, unbound):
            assert notifier.enabled
            assert notifier.ready("up") is False
            assert notifier.watchdog() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("1000000", "self", 0.5),
        ("30000000", "other", None),
        (None, None, None),
        ("0", None, None),
        ("-5", None, None),
        ("30s", None, None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, expected: float | None) -> None:
    """Half of WATCHDOG_USEC, only when WATCHDOG_PID is unset or ours."""
    env = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid == "self":
        env["WATCHDOG_PID"] = str(os.getpid())
    elif pid == "other":
        env["WATCHDOG_PID"] = str(os.getpid() + 1)
    assert SystemdNotifier.from_env(env).watchdog_interval_s == expected
