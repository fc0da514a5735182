"""What the bulk (first) pass of a migration sends, before and during it (pure core).

Stage: decisions. The bulk pass visits every page of RAM once, but only pages with
content cost their size on the wire: a zero page is 9 bytes (``facts.qemu``). On the
lab's 512 MiB guest 139 MiB had content, so counting all of RAM forecast 19.7 s for a
migration that took 5.3 s. What the guest has put in its memory, C, is estimated from:

* the guest's own figures, from a virtio-balloon with statistics (``guest-stats``):
  C >= RAM - free (``guest-stats``);
* the bulk pass of this VM's previous migration that qmpdirty saw (a cancelled or
  failed one; a completed one leaves the VM elsewhere): C >= the bytes it sent as
  pages with content (``previous-migration``). Linux does not clear the pages it
  frees, so content seldom shrinks;
* the host: C <= the bytes the host backs in the QEMU process's guest-RAM mappings
  (``host-memory``; a page never backed reads as zeros). An upper bound, rounded up by
  transparent huge pages: the high end, and the central figure when no lower bound is
  known;
* nothing: C anywhere from what the guest dirtied in the last measurement's window
  (pages it wrote have content) to RAM (``unknown``); the central figure is all of RAM,
  as before, so the range's low end is what is new.

A lower bound is the low end and the central figure; the high end is what the host
backs, else all of RAM (memory filled since, or freed pages that kept their data).
During the bulk pass the content still to send is the estimate less what was sent
(none once that is more), else the remaining bytes scaled by the share of content seen
so far. Must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmpdirty.decisions.migration.uncertainty import Span
from qmpdirty.facts.qemu import PAGE_HEADER_BYTES, ZERO_PAGE_WIRE_BYTES
from qmpdirty.facts.vm import GuestMemoryStats, GuestResidency, MigrationSnapshot

#: Where the content estimate comes from (the ``forecast`` payload's ``first_pass_source``).
FirstPassSource = Literal["guest-stats", "previous-migration", "host-memory", "unknown"]
PAGE = 4096
#: Guest statistics older than this no longer stand for the guest's memory.
GUEST_STATS_MAX_AGE_S = 600.0
#: Nor is a reading of the host's mappings older than this.
RESIDENCY_MAX_AGE_S = 600.0
#: A share of content seen over less of RAM than this is noise (the start of the pass).
MIN_SEEN_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class ContentSeen:
    """What the bulk pass of a migration sent: bytes of pages with content, bytes of
    RAM it covered, and when (epoch seconds)."""

    content_bytes: int
    covered_bytes: int
    at_s: float


@dataclass(frozen=True, slots=True)
class Content:
    """Bytes of RAM with content (low, central, high), where that comes from, and how."""

    bytes: Span
    source: FirstPassSource
    basis: str


def wire_bytes(content: float, covered: float, page_size: int = PAGE) -> float:
    """Bytes on the wire for a pass over ``covered`` bytes of RAM of which ``content``
    have content: each such page with its header, every other page as a zero page."""
    content = min(max(content, 0.0), covered)
    zero_pages = (covered - content) / page_size
    return content * (page_size + PAGE_HEADER_BYTES) / page_size + \
        zero_pages * ZERO_PAGE_WIRE_BYTES


def content_before(ram: int, guest: GuestMemoryStats | None, previous: ContentSeen | None,
                   now: float, dirtied: float = 0.0, *,
                   resident: GuestResidency | None = None) -> Content:
    """The content a migration started now would find: the larger lower bound known
    (guest statistics not older than ``GUEST_STATS_MAX_AGE_S``, the previous bulk pass)
    as low end and central figure, else ``dirtied`` (the bytes the guest dirtied in a
    measurement window) as the low end; what the host backs (``resident``, not older
    than ``RESIDENCY_MAX_AGE_S``) as the high end, and the central figure when no lower
    bound is known; else all of RAM."""
    floor = min(max(0.0, dirtied), float(ram))
    bounds: list[tuple[float, FirstPassSource, str]] = []
    if guest is not None and now - guest.updated_at_s <= GUEST_STATS_MAX_AGE_S:
        used = max(0, ram - guest.free_bytes)
        bounds.append((float(used), "guest-stats", f"the guest's balloon driver reports "
                       f"{guest.free_bytes / 2**20:.0f} MiB free, "
                       f"{max(0.0, now - guest.updated_at_s):.0f} s ago"))
    if previous is not None and previous.covered_bytes > 0:
        seen = min(previous.content_bytes, ram)
        bounds.append((float(seen), "previous-migration", f"the bulk pass of the migration "
                       f"{max(0.0, now - previous.at_s):.0f} s ago sent "
                       f"{previous.content_bytes / 2**20:.0f} MiB of pages with content"))
    high, backed, cap = float(ram), "", ""
    if resident is not None and now - resident.at_s <= RESIDENCY_MAX_AGE_S:
        high = min(float(ram), float(resident.resident_bytes))
        held = f"{resident.resident_bytes / 2**20:.0f} MiB"
        age = f"{max(0.0, now - resident.at_s):.0f} s ago"
        backed = (f"the host backs {held} of its RAM ({age}), and a page it never "
                  "backed is a zero page")
        cap = f"; at most the {held} the host backs ({age})"
    if not bounds:
        if backed:
            high = max(high, floor)
            return Content(Span(floor, high, high), "host-memory",
                           f"{backed}: at most that has content (central and high end), "
                           f"at least the {floor / 2**20:.0f} MiB the guest dirtied in a "
                           "measurement window")
        return Content(Span(floor, float(ram), float(ram)), "unknown",
                       "nothing known of the guest's memory: the first pass may send "
                       f"anything from the {floor / 2**20:.0f} MiB the guest dirtied in a "
                       "measurement window (low end) to all of RAM")
    low, source, basis = max(bounds)
    low = max(low, floor)
    high = max(high, low)
    return Content(Span(low, low, high), source,
                   basis + (cap or "; up to all of RAM if the guest filled more since"))


def content_left(snap: MigrationSnapshot, prior: Content | None) -> Span | None:
    """During the bulk pass: bytes with content among ``remaining_bytes``, between 0 (or
    the prior's low end less what was sent) and all of them. Central: the prior estimate
    less what was sent as content (none once more than it was sent: measured, spreading
    the share seen so far over the rest was the worse guess then); without one, the
    remaining bytes scaled by the share of content seen so far (all of them until
    ``MIN_SEEN_SHARE`` of RAM was seen)."""
    remaining = snap.remaining_bytes
    if remaining is None:
        return None
    page = snap.page_size or PAGE
    normal, zero = snap.normal_pages or 0, snap.zero_pages or 0
    sent = normal * page
    high = float(remaining)
    known = prior is not None and prior.source != "unknown"
    low = min(high, max(0.0, prior.bytes.low - sent)) if prior is not None else 0.0
    if prior is not None and known:
        return Span(low, min(high, max(low, prior.bytes.central - sent)), high)
    share = 1.0
    if snap.total_bytes and (normal + zero) * page >= MIN_SEEN_SHARE * snap.total_bytes:
        share = normal / (normal + zero)
    return Span(low, max(low, high * share), high)


def bulk_content(snap: MigrationSnapshot, now: float) -> ContentSeen | None:
    """What the bulk pass sent, from the first ``query-migrate`` after it ended
    (``dirty-sync-count`` 2, read right after MIGRATION_PASS 2: a few pages of the
    second pass may be in it)."""
    if snap.normal_pages is None or snap.zero_pages is None:
        return None
    page = snap.page_size or PAGE
    return ContentSeen(snap.normal_pages * page, (snap.normal_pages + snap.zero_pages) * page,
                       now)
