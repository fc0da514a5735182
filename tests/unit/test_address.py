"""QMP addresses (qmp/address.py): good ones round-trip, bad ones name the mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpdirty.config.address import ADDRESS_HINT, QmpAddress, parse_qmp_address

GOOD = [
    ("unix:/run/qemu/vm1.sock", QmpAddress("unix", path=Path("/run/qemu/vm1.sock")), "vm1"),
    ("unix:/var/lib/libvirt/qemu/domain-1-web/monitor.qmp",
     QmpAddress("unix", path=Path("/var/lib/libvirt/qemu/domain-1-web/monitor.qmp")), "monitor"),
    ("unix:relative/q.sock", QmpAddress("unix", path=Path("relative/q.sock")), "q"),
    ("unix:/run/plain", QmpAddress("unix", path=Path("/run/plain")), "plain"),
    ("unix:/run/.sock", QmpAddress("unix", path=Path("/run/.sock")), ".sock"),
    ("unix:/run/with:colon.sock", QmpAddress("unix", path=Path("/run/with:colon.sock")),
     "with:colon"),
    ("tcp:127.0.0.1:4444", QmpAddress("tcp", host="127.0.0.1", port=4444), "127.0.0.1_4444"),
    ("tcp:localhost:1", QmpAddress("tcp", host="localhost", port=1), "localhost_1"),
    ("tcp:kvm01.example.org:65535", QmpAddress("tcp", host="kvm01.example.org", port=65535),
     "kvm01.example.org_65535"),
    ("tcp:[::1]:4444", QmpAddress("tcp", host="::1", port=4444), "::1_4444"),
    ("tcp:[fe80::1%eth0]:5555", QmpAddress("tcp", host="fe80::1%eth0", port=5555),
     "fe80::1%eth0_5555"),
    ("tcp:h:04444", QmpAddress("tcp", host="h", port=4444), "h_4444"),
]


@pytest.mark.parametrize(("text", "address", "stem"), GOOD, ids=[g[0] for g in GOOD])
def test_good_addresses(text: str, address: QmpAddress, stem: str) -> None:
    parsed = parse_qmp_address(text)
    assert parsed == address
    assert parsed.stem == stem
    assert parse_qmp_address(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("address", "text"),
    [(QmpAddress("unix", path=Path("/run/q.sock")), "unix:/run/q.sock"),
     (QmpAddress("tcp", host="10.0.0.1", port=4444), "tcp:10.0.0.1:4444"),
     (QmpAddress("tcp", host="::1", port=4444), "tcp:[::1]:4444"),
     (QmpAddress("tcp", host="2001:db8::7", port=1), "tcp:[2001:db8::7]:1")],
)
def test_str_writes_the_config_form(address: QmpAddress, text: str) -> None:
    assert str(address) == text


BAD = [
    ("", "is not a QMP address"),
    ("unix", "is not a QMP address"),
    ("unix:", "is not a QMP address"),
    ("tcp:", "is not a QMP address"),
    ("/run/q.sock", "is not a QMP address"),
    ("tcp:host:0", "port 1-65535"),
    ("tcp:host:65536", "port 1-65535"),
    ("tcp:host:99999999", "port 1-65535"),
    ("tcp:host:-1", "port 1-65535"),
    ("tcp:host:+1", "port 1-65535"),
    ("tcp:host:http", "port 1-65535"),
    ("tcp:host:", "port 1-65535"),
    ("tcp:host: 1", "port 1-65535"),
    ("tcp:host", "port 1-65535"),
    ("tcp::4444", "needs a host"),
    ("tcp:[]:4444", "needs a host"),
    ("tcp:4444", "needs a host"),
    ("tcp:[::1]", "port 1-65535"),
    ("udp:host:1", "unknown scheme 'udp'"),
    ("UNIX:/run/q.sock", "unknown scheme 'UNIX'"),
    ("unix+tcp:/x", "unknown scheme"),
    ("http://host:80", "unknown scheme 'http'"),
    ("vsock:3:1234", "unknown scheme 'vsock'"),
]


@pytest.mark.parametrize(("text", "why"), BAD, ids=[repr(b[0]) for b in BAD])
def test_bad_addresses(text: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_qmp_address(text)
    message = str(info.value)
    assert why in message
    assert repr(text) in message
    assert message.endswith(ADDRESS_HINT)
