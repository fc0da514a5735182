"""QMP addresses as written in config and on the command line (pure).

``unix:PATH`` or ``tcp:HOST:PORT`` (IPv6 hosts in brackets). Parsing is pure so that
config validation and the CLI give the same message for the same mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qmpdirty.errors import AddressError

ADDRESS_HINT = "write unix:/path/to/qmp.sock or tcp:HOST:PORT"


@dataclass(frozen=True, slots=True)
class QmpAddress:
    """Where a QMP monitor listens."""

    kind: Literal["unix", "tcp"]
    path: Path | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    @property
    def stem(self) -> str:
        """A default VM name derived from the address (socket file stem or host_port)."""
        if self.path is not None:
            name = self.path.name
            return name.removesuffix(".sock").removesuffix(".qmp") or name
        return f"{self.host}_{self.port}"


def parse_qmp_address(text: str) -> QmpAddress:
    """Parse ``unix:PATH`` / ``tcp:HOST:PORT``; raise AddressError (a ValueError) naming
    the bad part."""
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise AddressError(f"{text!r} is not a QMP address; {ADDRESS_HINT}")
    if kind == "unix":
        return QmpAddress(kind="unix", path=Path(rest))
    if kind == "tcp":
        host, sep, port_text = rest.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise AddressError(f"{text!r} needs a host and a port 1-65535; {ADDRESS_HINT}")
        return QmpAddress(kind="tcp", host=host, port=int(port_text))
    raise AddressError(f"{text!r} has unknown scheme {kind!r}; {ADDRESS_HINT}")
