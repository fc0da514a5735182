"""Topic layout and name sanitising (telemetry/topics.py) against design.md § MQTT contract."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qmpdirty.telemetry.topics import (
    HOST_KINDS,
    MAX_NAME,
    TopicKind,
    Topics,
    sanitise,
    topic_matches,
)

SAFE = re.compile(r"[A-Za-z0-9_.-]+")
SAFE_CHARS = "ABCXYZabcxyz0189_.-"


def is_safe(name: str) -> bool:
    return bool(SAFE.fullmatch(name)) and len(name) <= MAX_NAME and set(name) != {"."}


# --- sanitise: examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vm1", "vm1"),
        ("web-01.example_prod", "web-01.example_prod"),
        ("a/b", "a_b"),
        ("a+b#c", "a_b_c"),
        ("my vm", "my_vm"),
        ("tab\there", "tab_here"),
        ("nul\x00", "nul_"),
        ("$SYS", "_SYS"),
        ("caf\u00e9", "caf_"),
        ("\U0001f600", "_"),
        ("", "_"),
        (".", "_"),
        ("..", "__"),
        ("...", "___"),
        ("a.", "a."),
        (".hidden", ".hidden"),
        ("x" * MAX_NAME, "x" * MAX_NAME),
    ],
)
def test_sanitise_examples(name: str, expected: str) -> None:
    assert sanitise(name) == expected


def test_long_name_keeps_a_prefix_and_a_hash() -> None:
    name = "v" * 200
    out = sanitise(name)
    assert len(out) == MAX_NAME
    assert out.startswith("v" * (MAX_NAME - 13) + "-")
    assert re.fullmatch(r"[0-9a-f]{12}", out[-12:])
    assert sanitise("v" * 199 + "w") != out


def test_one_over_the_limit_is_hashed() -> None:
    assert sanitise("x" * (MAX_NAME + 1)) != "x" * MAX_NAME
    assert len(sanitise("x" * (MAX_NAME + 1))) == MAX_NAME


# --- sanitise: properties -----------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_sanitise_output_is_a_safe_topic_level(name: str) -> None:
    out = sanitise(name)
    assert SAFE.fullmatch(out), out
    assert 0 < len(out) <= MAX_NAME
    assert set(out) != {"."}
    assert not any(c in out for c in "/+#\x00")
    assert sanitise(out) == out  # idempotent


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=SAFE_CHARS, min_size=1, max_size=MAX_NAME))
def test_sanitise_keeps_safe_names(name: str) -> None:
    assume(set(name) != {"."})
    assert sanitise(name) == name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_sanitise_is_length_preserving_below_the_limit(a: str, b: str) -> None:
    name = a + b
    assume(0 < len(name) <= MAX_NAME)
    assert len(sanitise(name)) == len(name)


@settings(max_examples=200, deadline=None)
@given(
    common=st.text(alphabet=SAFE_CHARS, min_size=MAX_NAME, max_size=MAX_NAME + 40),
    tail_a=st.text(max_size=20),
    tail_b=st.text(max_size=20),
)
def test_distinct_long_names_stay_distinct(common: str, tail_a: str, tail_b: str) -> None:
    """Long names sharing the kept prefix differ by the hash of the whole original name."""
    a, b = common + tail_a, common + tail_b
    assume(a != b)
    assert sanitise(a) != sanitise(b)
    assert sanitise(a)[: MAX_NAME - 13] == sanitise(b)[: MAX_NAME - 13]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="/+# ", min_size=MAX_NAME + 1, max_size=MAX_NAME + 20),
       st.text(alphabet="/+# ", min_size=MAX_NAME + 1, max_size=MAX_NAME + 20))
def test_long_unsafe_names_differing_only_in_unsafe_chars_stay_distinct(a: str, b: str) -> None:
    assume(a != b)
    assert sanitise(a) != sanitise(b)


# --- Topics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "host", "expected_prefix", "expected_host"),
    [
        ("qmpdirty", "kvm01", "qmpdirty", "kvm01"),
        ("site/dc1/qmpdirty", "kvm01", "site/dc1/qmpdirty", "kvm01"),
        ("/lead/trail/", "h", "lead/trail", "h"),
        ("a//b", "h", "a/b", "h"),
        ("a+/#b/$SYS", "h", "a_/_b/_SYS", "h"),
        ("", "h", "qmpdirty", "h"),
        ("/", "h", "qmpdirty", "h"),
        ("x/../y", "h", "x/__/y", "h"),
        ("p", "kvm01.example.org", "p", "kvm01.example.org"),
        ("p", "evil/host/+", "p", "evil_host__"),
        ("p", "", "p", "_"),
    ],
)
def test_topics_create_sanitises_each_level(
    prefix: str, host: str, expected_prefix: str, expected_host: str
) -> None:
    t = Topics.create(prefix, host)
    assert (t.prefix, t.host) == (expected_prefix, expected_host)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_topics_create_never_yields_wildcards_or_empty_levels(prefix: str, host: str) -> None:
    t = Topics.create(prefix, host)
    topic = t.vm_topic(sanitise("vm"), TopicKind.EVENT, "MIGRATION")
    levels = topic.split("/")
    assert all(levels) and "+" not in topic and "#" not in topic
    assert all(SAFE.fullmatch(level) for level in levels)
    assert Topics.create(t.prefix, t.host) == t


TOPICS = Topics.create("qmpdirty", "kvm01")

# design.md § MQTT contract (version 1): topic, retained, QoS.
CONTRACT = [
    (TopicKind.VM_STATUS, "qmpdirty/kvm01/vm/web1/status", True, 1),
    (TopicKind.INFO, "qmpdirty/kvm01/vm/web1/info", True, 1),
    (TopicKind.TRACKING, "qmpdirty/kvm01/vm/web1/tracking", True, 1),
    (TopicKind.BLOCKERS, "qmpdirty/kvm01/vm/web1/blockers", True, 1),
    (TopicKind.DIRTY_RATE, "qmpdirty/kvm01/vm/web1/dirty_rate", True, 0),
    (TopicKind.MIGRATION, "qmpdirty/kvm01/vm/web1/migration", True, 1),
    (TopicKind.FORECAST, "qmpdirty/kvm01/vm/web1/forecast", True, 1),
    (TopicKind.PASS, "qmpdirty/kvm01/vm/web1/migration/pass", False, 1),
    (TopicKind.SUMMARY, "qmpdirty/kvm01/vm/web1/migration/summary", True, 1),
    (TopicKind.HOOK, "qmpdirty/kvm01/vm/web1/hook", False, 1),
    (TopicKind.ERROR, "qmpdirty/kvm01/vm/web1/error", True, 1),
]


@pytest.mark.parametrize(("kind", "topic", "retain", "qos"), CONTRACT, ids=str)
def test_vm_topics_follow_the_contract(kind: TopicKind, topic: str, retain: bool, qos: int
                                       ) -> None:
    assert TOPICS.vm_topic("web1", kind) == topic
    assert kind.retain is retain
    assert kind.qos == qos


def test_event_topic_has_the_event_name_as_last_level() -> None:
    kind = TopicKind.EVENT
    assert TOPICS.vm_topic("web1", kind, "MIGRATION_PASS") == \
        "qmpdirty/kvm01/vm/web1/event/MIGRATION_PASS"
    assert (kind.retain, kind.qos) == (False, 1)


@pytest.mark.parametrize(("event", "level"), [("A/B", "A_B"), ("#", "_"), ("", "_"), ("..", "__")])
def test_event_names_are_sanitised(event: str, level: str) -> None:
    topic = TOPICS.vm_topic("web1", TopicKind.EVENT, event)
    assert topic == f"qmpdirty/kvm01/vm/web1/event/{level}"


def test_host_status_topic() -> None:
    kind = TopicKind.HOST_STATUS
    assert TOPICS.host_topic(kind) == "qmpdirty/kvm01/status"
    assert (kind.retain, kind.qos) == (True, 1)


def test_daemon_topic_is_retained_on_the_host_level() -> None:
    assert TOPICS.host_topic(TopicKind.DAEMON) == "qmpdirty/kvm01/daemon"
    assert (TopicKind.DAEMON.retain, TopicKind.DAEMON.qos) == (True, 1)


def test_vm_filter_covers_every_vm_topic() -> None:
    assert TOPICS.vm_filter() == "qmpdirty/kvm01/vm/#"
    for kind, topic, _, _ in CONTRACT:
        assert topic.startswith(TOPICS.vm_filter()[:-1]), kind


def test_every_kind_has_a_contract_row() -> None:
    covered = {k for k, *_ in CONTRACT} | {TopicKind.EVENT, TopicKind.HOST_STATUS,
                                             TopicKind.DAEMON}
    assert covered == set(TopicKind)


def test_vm_status_is_its_own_kind_not_a_host_kind() -> None:
    """VM_STATUS and HOST_STATUS share suffix, retain and QoS, but not their level.

    With equal Enum values Python makes VM_STATUS an alias of HOST_STATUS, so
    ``HOST_KINDS`` (the daemon-level kinds) claims to contain the VM status topic.
    """
    assert TopicKind.VM_STATUS.name == "VM_STATUS"
    assert TopicKind.VM_STATUS not in HOST_KINDS
    assert {TopicKind.HOST_STATUS, TopicKind.DAEMON} == HOST_KINDS


# --- filter matching (for readers of retained state) ----------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("+/+", "a/b", True),
        ("a/+/c", "a//c", True),
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),  # '#' also matches the parent level (MQTT 3.1.1 4.7.1.2)
        ("#", "a/b", True),
        ("a/b/#", "a/c", False),
        ("qmpdirty/+/vm/web1/status", "qmpdirty/h1/vm/web1/status", True),
        ("qmpdirty/+/vm/web1/status", "qmpdirty/h1/vm/web10/status", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


@given(st.lists(st.text(SAFE_CHARS, max_size=4), min_size=1, max_size=5))
def test_a_topic_matches_itself_and_its_wildcards(levels: list[str]) -> None:
    topic = "/".join(levels)
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic)
    assert topic_matches("/".join("+" for _ in levels), topic)
    assert not topic_matches(topic + "/x", topic)
