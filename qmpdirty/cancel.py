"""Cancellation that wins over Python 3.11's TaskGroup and ``wait_for`` (shell helper).

A TaskGroup whose task is cancelled from outside cancels its children; a child that
fails meanwhile (QEMU hung up, a TLS handshake failed as the daemon stopped) makes the
group raise that failure instead of the cancellation, and the cancel request is spent.
Code that unwraps a group's errors and carries on (a reconnect loop, a VM's firewall)
would then never end. Every such place asks here first.

The answer holds only if the group's body was awaiting when a child failed (it awaits
its children, or the session's end): Python 3.11 takes back the cancel it sends the
body to abort it only when the body receives it, and otherwise leaves the task's
``cancelling()`` count one too high for good.
"""

from __future__ import annotations

import asyncio
import contextlib


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` when the current task is being cancelled from outside."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a caller should raise for ``group``: its first error, unless the current task
    is being cancelled (then ``CancelledError`` is raised here)."""
    raise_if_cancelled()
    return group.exceptions[0]


async def wait_set(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait at most ``timeout_s`` for ``event``; whether it is set.

    Not ``asyncio.wait_for``: on Python 3.11, when the event is set in the same turn of
    the loop as the task is cancelled, ``wait_for`` returns and the cancellation is lost;
    a task that loops on it then never ends, and neither does its TaskGroup (a VM whose
    QEMU died stayed ``online``, a stop hung). ``asyncio.timeout`` lets it through."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()
