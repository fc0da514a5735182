"""The one allow-list of QMP commands the daemon may send (pure core).

qmpdirty runs beside libvirt, which owns the VM: the daemon must never change a
VM unless the operator's policy says so. ``CommandPolicy.check`` is consulted by
``QmpSession.execute`` for every command, so there is exactly one place to audit.

By default only queries are sent (``human-monitor-command`` only with the read-only
command lines of ``READ_ONLY_HMP``), plus:
* ``migrate-set-capabilities`` with exactly ``events=true`` when
  ``[qmp] enable_migration_events`` is true (and the capability is off), so that
  MIGRATION / MIGRATION_PASS events are emitted (libvirt turns it on too);
* ``calc-dirty-rate`` when ``[dirty_rate] enabled`` is true (a measurement, not a
  state change, but it does take QEMU's single measurement slot);
* ``migrate-set-parameters`` with ``downtime-limit`` alone, only when
  ``[policy] apply_recommendations`` is true and ``under_libvirt`` is false.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qmpdirty.errors import CommandNotAllowed

#: Commands that only read state. QEMU's own ``qmp_capabilities`` handshake is
#: sent by the library before any of these and is not a command qmpdirty issues.
READ_ONLY: frozenset[str] = frozenset({
    "query-version", "query-name", "query-uuid", "query-status", "query-kvm",
    "query-cpus-fast", "query-memory-size-summary", "query-migrate",
    "query-migrate-capabilities", "query-migrate-parameters", "query-dirty-rate",
    "query-commands", "query-qmp-schema", "query-pci", "query-memory-devices",
    "query-memdev", "query-vcpu-dirty-limit", "query-balloon", "qom-get", "qom-list",
    "qom-list-get", "qom-list-properties", "device-list-properties",
})

EVENTS_ON = ({"capability": "events", "state": True},)

#: HMP command lines that only read: ``human-monitor-command`` can run anything HMP
#: can (``quit``, ``migrate``...), so it is allowed with exactly these and no other.
READ_ONLY_HMP: frozenset[str] = frozenset({"info mtree -f -o"})


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """Which non-query commands this daemon may send (from config; both off = read-only)."""

    enable_migration_events: bool = True
    measure_dirty_rate: bool = True
    #: ``[policy] apply_recommendations`` and not under libvirt: may raise downtime-limit
    apply_recommendations: bool = False

    def allows(self, command: str, arguments: Mapping[str, object] | None) -> bool:
        """True when ``command`` with ``arguments`` may be sent."""
        if command in READ_ONLY:
            return True
        if command == "migrate-set-capabilities":
            caps = (arguments or {}).get("capabilities")
            return self.enable_migration_events and isinstance(caps, list | tuple) and (
                tuple(caps) == EVENTS_ON
            )
        if command == "calc-dirty-rate":
            return self.measure_dirty_rate
        if command == "human-monitor-command":
            return (arguments or {}).get("command-line") in READ_ONLY_HMP
        if command == "migrate-set-parameters":
            return self.apply_recommendations and set(arguments or {}) == {"downtime-limit"}
        return False

    def check(self, command: str, arguments: Mapping[str, object] | None) -> None:
        """Raise CommandNotAllowed unless ``allows``."""
        if not self.allows(command, arguments):
            raise CommandNotAllowed(
                f"{command} is not on qmpdirty's allow-list (qmp/commands.py); "
                "the daemon never changes a VM unless policy enables it"
            )
