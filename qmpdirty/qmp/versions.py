"""Differences in QEMU's QMP surface between versions (pure core).

Every version-dependent choice about *how to ask QEMU* lives here, each with the
version that introduced it, so that supporting an older QEMU is one edit.
"""

from __future__ import annotations

Version = tuple[int, int, int]

#: ``calc-dirty-rate`` / ``query-dirty-rate`` accept ``calc-time-unit`` (QEMU 8.2).
CALC_TIME_UNIT_SINCE: Version = (8, 2, 0)

#: Oldest QEMU whose replies qmpdirty is built against (design: 8.0 and newer).
OLDEST_SUPPORTED: Version = (8, 0, 0)


def has_calc_time_unit(version: Version) -> bool:
    """Millisecond dirty-rate windows are possible (QEMU >= 8.2)."""
    return version >= CALC_TIME_UNIT_SINCE


def is_supported(version: Version) -> bool:
    """qmpdirty's reply models cover this QEMU (>= 8.0)."""
    return version >= OLDEST_SUPPORTED
