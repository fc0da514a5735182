"""sd_notify client: tells systemd that the daemon is ready, alive or stopping.

Stage: imperative shell (I/O). It sends one datagram per call and decides nothing: the
daemon chooses when to call. It must never raise on a failed send (a lost notification
must not take down the daemon systemd supervises): calls return False and the caller
logs once.

Hand-written on purpose: the protocol (sd_notify(3)) is one AF_UNIX datagram of
``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``; fifteen lines of stdlib beat a dependency.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

_SEND_TIMEOUT_S = 1.0  # systemd drains its socket at once; never stall the loop for long


@dataclass(frozen=True, slots=True)
class SystemdNotifier:
    """Where to send notifications (None: not under systemd) and how often to ping."""

    address: str | None
    watchdog_interval_s: float | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SystemdNotifier:
        """Read ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.

        A leading ``@`` names an abstract socket. Anything but an absolute path or ``@name``
        (e.g. ``vsock:`` from newer systemd) is treated as no socket. The watchdog interval
        is half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3) advice), and only when the
        variables are meant for this process and there is a socket to ping.
        """
        raw = environ.get("NOTIFY_SOCKET", "")
        address: str | None = None
        if raw.startswith("/"):
            address = raw
        elif raw.startswith("@") and len(raw) > 1:
            address = "\0" + raw[1:]
        interval = _watchdog_interval_s(environ) if address is not None else None
        return cls(address=address, watchdog_interval_s=interval)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.address is not None

    def ready(self, status: str) -> bool:
        """Start-up is complete (``Type=notify``): systemd starts units ordered after us."""
        return self._send(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> bool:
        """Free-form state shown by ``systemctl status``."""
        return self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Still alive: call every ``watchdog_interval_s`` from the event loop itself."""
        return self._send("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        """Shutdown has begun, so systemd does not mistake the wait for a hang."""
        return self._send(f"STOPPING=1\nSTATUS={_one_line(status)}")

    def _send(self, message: str) -> bool:
        """One datagram; True if sent or if there is nowhere to send, False on error."""
        if self.address is None:
            return True
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT_S)
                sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError:
            return False
        return True


def _one_line(text: str) -> str:
    """A newline in STATUS= would start a new assignment (e.g. MAINPID=): flatten it."""
    return text.replace("\r", " ").replace("\n", " ").replace("\0", " ")


def _watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, if it is set, valid and meant for our pid."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec / 2_000_000
