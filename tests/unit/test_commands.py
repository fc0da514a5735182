"""The QMP command allow-list (qmp/commands.py): queries only, plus two opt-in exceptions."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from qmpdirty.errors import CommandNotAllowed, QmpError
from qmpdirty.qmp.commands import EVENTS_ON, READ_ONLY, CommandPolicy

READ_ONLY_POLICY = CommandPolicy(enable_migration_events=False, measure_dirty_rate=False)
DEFAULT = CommandPolicy()
EVENTS_TRUE = {"capabilities": [{"capability": "events", "state": True}]}

STATE_CHANGING = [
    "migrate", "migrate_cancel", "migrate-incoming", "migrate-continue", "migrate-pause",
    "migrate-recover", "migrate-set-parameters", "migrate-start-postcopy", "stop", "cont",
    "quit", "system_reset", "system_powerdown", "human-monitor-command", "device_add",
    "device_del", "object-add", "object-del", "qom-set", "set-vcpu-dirty-limit",
    "cancel-vcpu-dirty-limit", "block-dirty-bitmap-add", "x-exit-preconfig", "balloon",
    "inject-nmi", "set_password", "screendump", "dump-guest-memory", "getfd", "closefd",
    "",
    # near misses of allowed names
    "Query-Migrate", "query-migrate ", " query-migrate", "query-migrate\n", "query_migrate",
    "calc_dirty_rate", "migrate-set-capabilities2",
]


@pytest.mark.parametrize("command", sorted(READ_ONLY))
@pytest.mark.parametrize("policy", [READ_ONLY_POLICY, DEFAULT], ids=["read-only", "default"])
def test_every_query_is_allowed(command: str, policy: CommandPolicy) -> None:
    assert policy.allows(command, None)
    assert policy.allows(command, {"path": "/machine", "property": "type"})
    policy.check(command, None)


def test_read_only_list_holds_only_queries() -> None:
    for command in READ_ONLY:
        assert command.startswith(("query-", "qom-get", "qom-list", "device-list-properties")), \
            command


@pytest.mark.parametrize("command", STATE_CHANGING)
@pytest.mark.parametrize("policy", [READ_ONLY_POLICY, DEFAULT, CommandPolicy(True, True)],
                         ids=["read-only", "default", "all-opt-ins"])
def test_state_changing_commands_are_refused(command: str, policy: CommandPolicy) -> None:
    assert not policy.allows(command, None)
    with pytest.raises(CommandNotAllowed) as info:
        policy.check(command, {"uri": "exec:cat > /dev/null"})
    assert command in str(info.value)
    assert "allow-list" in str(info.value)
    assert isinstance(info.value, QmpError)


def test_default_policy_opts_in_to_both_exceptions() -> None:
    assert CommandPolicy(enable_migration_events=True, measure_dirty_rate=True) == DEFAULT


@pytest.mark.parametrize(
    "arguments",
    [EVENTS_TRUE, {"capabilities": ({"capability": "events", "state": True},)},
     {"capabilities": list(EVENTS_ON)}],
)
def test_migration_events_on_is_allowed_when_policy_allows(arguments: Mapping[str, object]
                                                           ) -> None:
    assert DEFAULT.allows("migrate-set-capabilities", arguments)
    DEFAULT.check("migrate-set-capabilities", arguments)


def test_migration_events_on_is_refused_when_policy_forbids() -> None:
    policy = CommandPolicy(enable_migration_events=False, measure_dirty_rate=True)
    assert not policy.allows("migrate-set-capabilities", EVENTS_TRUE)
    with pytest.raises(CommandNotAllowed):
        policy.check("migrate-set-capabilities", EVENTS_TRUE)


@pytest.mark.parametrize(
    "arguments",
    [
        None,
        {},
        {"capabilities": []},
        {"capabilities": [{"capability": "events", "state": False}]},
        {"capabilities": [{"capability": "postcopy-ram", "state": True}]},
        {"capabilities": [{"capability": "x-colo", "state": True}]},
        {"capabilities": [{"capability": "events", "state": True},
                          {"capability": "postcopy-ram", "state": True}]},
        {"capabilities": [{"capability": "postcopy-ram", "state": True},
                          {"capability": "events", "state": True}]},
        {"capabilities": [{"capability": "events", "state": True}] * 2},
        {"capabilities": [{"capability": "events", "state": True, "extra": 1}]},
        {"capabilities": [{"capability": "events"}]},
        {"capabilities": {"capability": "events", "state": True}},
        {"capabilities": "events"},
        {"capabilities": [["events", True]]},
        {"capability": "events", "state": True},
    ],
    ids=lambda a: repr(a)[:60],
)
def test_migrate_set_capabilities_is_refused_unless_exactly_events_true(
    arguments: Mapping[str, object] | None,
) -> None:
    assert not DEFAULT.allows("migrate-set-capabilities", arguments)
    with pytest.raises(CommandNotAllowed):
        DEFAULT.check("migrate-set-capabilities", arguments)


@pytest.mark.parametrize(("measure", "allowed"), [(True, True), (False, False)])
def test_calc_dirty_rate_follows_policy(measure: bool, allowed: bool) -> None:
    policy = CommandPolicy(enable_migration_events=True, measure_dirty_rate=measure)
    args = {"calc-time": 500, "calc-time-unit": "millisecond", "mode": "page-sampling"}
    assert policy.allows("calc-dirty-rate", args) is allowed
    if allowed:
        policy.check("calc-dirty-rate", args)
    else:
        with pytest.raises(CommandNotAllowed, match="calc-dirty-rate"):
            policy.check("calc-dirty-rate", args)


def test_calc_dirty_rate_does_not_open_migrate_set_capabilities() -> None:
    policy = CommandPolicy(enable_migration_events=False, measure_dirty_rate=True)
    assert not policy.allows("migrate-set-capabilities", EVENTS_TRUE)
    assert policy.allows("calc-dirty-rate", None)


def test_policy_may_raise_downtime_limit_only_when_enabled() -> None:
    from qmpdirty.errors import CommandNotAllowed
    from qmpdirty.qmp.commands import CommandPolicy

    args = {"downtime-limit": 5000}
    assert not CommandPolicy().allows("migrate-set-parameters", args)
    on = CommandPolicy(apply_recommendations=True)
    assert on.allows("migrate-set-parameters", args)
    for other in ({"max-bandwidth": 1}, {"downtime-limit": 5000, "max-bandwidth": 1}, {}):
        assert not on.allows("migrate-set-parameters", other)
        with pytest.raises(CommandNotAllowed):
            on.check("migrate-set-parameters", other)
