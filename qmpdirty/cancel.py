"""Cancellation that wins over Python 3.11's TaskGroup (shell helper).

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
