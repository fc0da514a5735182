"""Topic names and the VMs that own them (``daemon.vm.Context.claim``; issue 12, item 8).

Two VMs whose names sanitise alike used to swap ``<name>`` and ``<name>.2`` whenever
they reconnected in the other order. Model-based: any order of sessions starting and
ending, for VMs with and without a key, must keep one name per VM and one VM per name
while its record is kept, and never two live sessions on one name.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qmpdirty.config.load import Config
from qmpdirty.daemon.vm import Context, SessionOwner
from qmpdirty.facts.vm import VmIdentity
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.telemetry.render import Outgoing
from qmpdirty.telemetry.topics import Topics

KEYS = ("uuid:a", "uuid:b", "uuid:c", "qmp:unix:/run/d.sock")


class Nowhere:
    def publish(self, msg: Outgoing) -> None:
        pass


def context() -> Context:
    cfg = Config.model_validate({"host": {"name": "h1"}})
    return Context(cfg, Nowhere(), Topics.create("qmpdirty", "h1"), CommandPolicy())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), max_size=60))
def test_each_vm_keeps_its_name_whatever_the_order(steps: list[tuple[str, bool]]) -> None:
    ctx = context()
    live: dict[str, SessionOwner] = {}  # key -> its session
    given_name: dict[str, str] = {}  # key -> the name it got first
    for key, start in steps:
        if start and key not in live:
            owner = SessionOwner(key)
            vm = ctx.claim("web_1", owner, key)
            live[key] = owner
            assert given_name.setdefault(key, vm.name) == vm.name
        elif not start and key in live:
            owner = live.pop(key)
            ctx.release(ctx.vms[given_name[key]], owner)
        owners = [vm.owner for vm in ctx.vms.values() if vm.owner is not None]
        assert len(owners) == len(set(map(id, owners))) == len(live)
    assert len(set(given_name.values())) == len(given_name)  # one VM per name


def test_the_first_claim_keeps_the_plain_name() -> None:
    ctx = context()
    a, b = SessionOwner("a"), SessionOwner("b")
    assert ctx.claim("web_1", a, "uuid:a").name == "web_1"
    assert ctx.claim("web_1", b, "uuid:b").name == "web_1.2"
    ctx.release(ctx.vms["web_1"], a)
    ctx.release(ctx.vms["web_1.2"], b)
    b2, a2 = SessionOwner("b2"), SessionOwner("a2")
    assert ctx.claim("web_1", b2, "uuid:b").name == "web_1.2"  # b first this time
    assert ctx.claim("web_1", a2, "uuid:a").name == "web_1"


def test_one_qemu_reached_twice_gets_a_second_name() -> None:
    ctx = context()
    assert ctx.claim("web_1", SessionOwner("m1"), "uuid:a").name == "web_1"
    assert ctx.claim("web_1", SessionOwner("m2"), "uuid:a").name == "web_1.2"


def test_a_name_adopted_from_the_broker_goes_to_the_first_claim() -> None:
    ctx = context()
    ctx.adopt("web_1", "online")
    vm = ctx.claim("web_1", SessionOwner("a"), "uuid:a")
    assert (vm.name, vm.key) == ("web_1", "uuid:a")


def test_a_forgotten_name_is_free_again() -> None:
    ctx = context()
    a = SessionOwner("a")
    ctx.release(ctx.claim("web_1", a, "uuid:a"), a)
    ctx.forget(ctx.vms["web_1"])
    assert ctx.claim("web_1", SessionOwner("b"), "uuid:b").name == "web_1"


def test_the_key_is_the_vm_not_the_process() -> None:
    """A QEMU that restarts is the same VM: server mode gives it a new pid and label,
    so the key is its UUID, else its ``-name`` as QEMU gives it (with the address in
    client mode, where two QEMUs may share a name)."""
    server = SessionOwner("server:/run/q.sock (pid 10)")
    client = SessionOwner("unix:/run/a.sock", "unix:/run/a.sock")
    named = VmIdentity(name="web 1", uuid=None, pid=10)
    assert server.key(VmIdentity(name="web 1", uuid="u-1", pid=10)) == "uuid:u-1"
    assert server.key(named) == "name:web 1"
    assert client.key(named) == "name:web 1@unix:/run/a.sock"
    assert client.key(VmIdentity(name=None, uuid=None, pid=None)) == "qmp:unix:/run/a.sock"
    assert server.key(None) is None
    ctx = context()
    ctx.release(ctx.claim("web_1", server, server.key(named)), server)
    again = SessionOwner("server:/run/q.sock (pid 11)")  # restarted: a new pid
    assert ctx.claim("web_1", again, again.key(named)).name == "web_1"
