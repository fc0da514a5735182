"""What a sans-I/O query and its driver exchange: requests out, replies in (pure).

Stage: translate. A ``Query`` says which QMP commands to send next (``next_requests``),
takes their replies back in the same order (``receive``) and ends with a value
(``result``); in the manner of h11 it never does I/O itself. Its driver does:
``qmp/gather.run`` sends each batch at once over a ``QmpSession``, ``drive`` here
answers from a function in-process (tests, fuzzers: no socket, no loop); the VFIO
stand-in runs the same loop awaiting each answer (it asks its QEMU what it does not
make up), still without a socket.
Must not do I/O, import asyncio/socket/logging/time/os, or hold a session.

A reply is a value either way: ``Returned`` (QMP's ``return``) or ``Failed`` (its
``error``: class and desc). Whether a failure ends the query is the query's decision:
one it cannot do without raises ``QmpCommandError`` from ``receive``, as the session
would have. A query is written as a generator of its rounds (``Steps``): each ``yield``
is one batch of requests, and evaluates to their replies.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from qmpdirty.errors import InternalError, QmpCommandError, QmpError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    """One QMP command to send. ``optional``: the query does without its answer, so the
    driver answers a timeout or an allow-list refusal with ``Failed`` as well, instead
    of ending the query."""

    command: str
    arguments: Mapping[str, object] | None = None
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Returned:
    """QEMU's ``{"return": value}``, unvalidated (the query validates it)."""

    value: object


@dataclass(frozen=True, slots=True)
class Failed:
    """No value: QEMU's ``{"error": {"class", "desc"}}``, or, for an optional request,
    no reply at all (``error_class`` None: timed out or refused; ``desc`` says which)."""

    error_class: str | None
    desc: str

    def describe(self, command: str) -> str:
        """As ``QmpCommandError`` words it: ``command: Class: desc``."""
        return f"{command}: {self.error_class}: {self.desc}" if self.error_class else self.desc


Reply = Returned | Failed
#: A query's rounds: yields each batch of requests, is sent their replies, returns T.
Steps = Generator[list[Request], Sequence[Reply], T]
#: ``drive``'s answerer: the reply's value, or a ``Failed`` (or ``Returned``) as is.
Answer = Callable[[str, Mapping[str, object] | None], object]


class Query(Generic[T]):
    """A question to QEMU that needs one or more rounds, without I/O.

    ``next_requests()`` is the batch to send now ([] once finished); ``receive`` takes
    one reply per request, in order; ``result()`` is the answer once finished. A reply
    of the wrong shape raises ``QmpReplyError`` from ``receive``, an error reply the
    query cannot do without ``QmpCommandError``; the query is then spent.
    """

    def __init__(self, steps: Steps[T]) -> None:
        self._steps = steps
        self._asked: list[Request] = []
        self._result: tuple[T] | None = None
        self._advance(lambda: next(steps))

    def next_requests(self) -> list[Request]:
        """What to send now, all at once; [] when finished."""
        return list(self._asked)

    def receive(self, replies: Sequence[Reply]) -> None:
        """The replies to ``next_requests()``, in its order."""
        asked = self._asked
        if not asked or len(replies) != len(asked):
            raise InternalError(f"{len(replies)} replies for {len(asked)} requests")
        self._asked = []
        self._advance(lambda: self._steps.send(replies))

    def result(self) -> T:
        """The answer; ``InternalError`` before the last round was received."""
        if self._result is None:
            raise InternalError("the query is not finished (or failed)")
        return self._result[0]

    def _advance(self, step: Callable[[], list[Request]]) -> None:
        try:
            batch = step()
        except StopIteration as done:
            self._result = (done.value,)
            return
        if not batch:
            raise InternalError("a query round asked for nothing")
        self._asked = batch


class Answers:
    """The replies to one batch, taken in the order the batch asked (inside ``Steps``)."""

    def __init__(self, batch: Sequence[Request], replies: Sequence[Reply]) -> None:
        self._pairs = iter(zip(batch, replies, strict=True))

    def take(self) -> tuple[Request, Reply]:
        """The next request and its reply, as they are."""
        return next(self._pairs)

    def value(self) -> object:
        """The next reply's value; an error ends the query (``returned``)."""
        return returned(*self.take())

    def optional(self) -> tuple[object, str | None]:
        """The next reply's value and None, or None and why there is none."""
        request, reply = self.take()
        if isinstance(reply, Failed):
            return None, reply.describe(request.command)
        return reply.value, None


def returned(request: Request, reply: Reply) -> object:
    """The value of a reply the query cannot do without: an error raises
    ``QmpCommandError`` (as ``QmpSession.execute`` would have), no reply ``QmpError``."""
    if isinstance(reply, Returned):
        return reply.value
    if reply.error_class is None:
        raise QmpError(reply.describe(request.command))
    raise QmpCommandError(request.command, reply.error_class, reply.desc)


def drive(query: Query[T], answer: Answer) -> T:
    """Run ``query`` to its end in-process: ``answer(command, arguments)`` gives each
    reply (a plain value is a ``Returned``). For tests, fuzzers and stand-ins."""
    while batch := query.next_requests():
        query.receive([_reply(answer(r.command, r.arguments)) for r in batch])
    return query.result()


def _reply(answer: object) -> Reply:
    return answer if isinstance(answer, Returned | Failed) else Returned(answer)
