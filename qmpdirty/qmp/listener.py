"""Server mode: the UNIX socket that QEMUs dial (shell).

QEMU started with ``-chardev socket,id=qmpdirty,path=SOCK,server=off,reconnect-ms=N
-mon chardev=qmpdirty,mode=control`` connects here and re-dials by itself when the
daemon restarts, so the daemon never needs access to QEMU's own sockets. The peer's
pid, uid and gid come from ``SO_PEERCRED`` (the kernel's word, not the peer's).
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from qmpdirty.errors import InternalError, QmpConnectError

#: ``accept()`` failures that mean "no descriptor or memory for one more connection now"
#: (accept(2)): the listener waits and tries again instead of failing. Anyone allowed to
#: open the socket can cause them by holding connections open.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: ``accept()`` failures that mean the listening socket itself is gone (closed at stop).
FATAL = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})
#: The longest wait between ``accept()`` attempts while descriptors are exhausted.
MAX_BACKOFF_S = 1.0


@dataclass(frozen=True, slots=True)
class PeerCred:
    """Credentials of the process on the other end of a UNIX socket."""

    pid: int
    uid: int
    gid: int


def peer_cred(sock: socket.socket) -> PeerCred:
    """``SO_PEERCRED`` of a connected UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid, uid, gid)


class QmpListener:
    """A listening UNIX socket with the configured mode and group."""

    def __init__(self, path: Path, mode: int, group: str | None) -> None:
        self.path = path
        self._mode = mode
        self._group = group
        self._sock: socket.socket | None = None
        self.refused = 0  # accept() attempts that found no descriptor free
        self.last_refusal = ""

    def open(self) -> None:
        """Bind and listen; a stale socket file is replaced, anything else is an error."""
        try:
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
            else:
                raise QmpConnectError(f"{self.path} exists and is not a socket; remove it")
        except FileNotFoundError:
            pass
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o777)  # no window in which the socket is more open than asked
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, self._mode)
            if self._group:
                os.chown(self.path, -1, grp.getgrnam(self._group).gr_gid)
            sock.listen(128)
            sock.setblocking(False)
        except (OSError, KeyError) as exc:
            sock.close()
            raise QmpConnectError(f"cannot listen on {self.path}: {exc}") from exc
        self._sock = sock

    async def accept(self) -> tuple[socket.socket, PeerCred]:
        """The next QEMU that dialled in, with its credentials. Never fails while the
        socket is open: out of descriptors (``EXHAUSTED``) it backs off, doubling up to
        ``MAX_BACKOFF_S``, and counts it in ``refused``; a peer that went away before
        its credentials were read is skipped."""
        if self._sock is None:
            raise InternalError(f"accept on {self.path} before open()")
        loop = asyncio.get_running_loop()
        backoff = 0.01
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:
                if exc.errno in FATAL:
                    raise QmpConnectError(f"accept on {self.path}: {exc}") from exc
                if exc.errno not in EXHAUSTED:  # a connection that failed while queued
                    continue
                self.refused += 1
                self.last_refusal = os.strerror(exc.errno or 0)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            try:
                return conn, peer_cred(conn)
            except OSError:
                conn.close()

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)
