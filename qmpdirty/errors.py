"""The one exception tree of qmpdirty.

Library errors are translated at the boundary (``raise ... from exc``) into one of
these, so callers catch qmpdirty's errors and nothing else. Cancellation is never
wrapped. Outcomes such as "VM blocked" are values, not exceptions.

::

    QmpDirtyError
     +-- ConfigError                 bad or unreadable configuration (exit 2)
     +-- QmpError                    anything on a QMP connection
     |    +-- QmpConnectError        could not connect / greet / negotiate
     |    +-- QmpClosedError         the session ended (QEMU gone, EOF)
     |    +-- QmpQueryError          one question failed; the session goes on
     |         +-- QmpTimeoutError   a command got no reply in time
     |         +-- QmpCommandError   QEMU answered with an error (class, desc)
     |         +-- QmpReplyError     a reply did not have the expected shape
     |         +-- CommandNotAllowed the allow-list refused to send a command
     +-- SinkError                   publication could not proceed
     +-- PayloadError                a payload read back from the broker is not valid
     +-- AddressError                a QMP address that does not parse (also a ValueError)
     +-- RangeInputError             IOVA mappings or a range count the kernel would refuse
     |                               (also a ValueError)
     +-- UsageError                  a bad command-line argument or input file (exit 2)
     +-- InternalError               a broken invariant inside qmpdirty: a bug to report

``qmp/session.py`` raises two private subclasses of its own, so that ``qemu.qmp``'s
reader ends or fails a command with qmpdirty's error: ``_Oversized`` (a
``QmpClosedError``) and ``_UnreadableReply`` (a ``QmpReplyError``). The demo's
``DemoError`` (``demo/errors.py``) is the demo's, outside this tree.
"""


class QmpDirtyError(Exception):
    """Root of every error qmpdirty raises on purpose."""


class ConfigError(QmpDirtyError):
    """The configuration is missing, unreadable or invalid.

    ``problems`` holds one ``(key_path, message, hint)`` per problem so that
    ``check-config`` can print them all at once.
    """

    def __init__(self, source: str, problems: list[tuple[str, str, str]]) -> None:
        self.source = source
        self.problems = problems
        first = problems[0] if problems else ("", "invalid configuration", "")
        super().__init__(f"{source}: {first[0] or '<file>'}: {first[1]}")


class QmpError(QmpDirtyError):
    """Something went wrong on a QMP connection."""


class QmpConnectError(QmpError):
    """Could not connect to, greet or negotiate with a QMP server.

    ``protocol`` is true when something answered but did not speak QMP properly (a
    bad greeting, a failed negotiation): the peer is broken, not merely absent.
    """

    def __init__(self, message: str, *, protocol: bool = False) -> None:
        super().__init__(message)
        self.protocol = protocol


class QmpClosedError(QmpError):
    """The QMP session is closed (QEMU exited or hung up)."""


class QmpQueryError(QmpError):
    """One command or event could not be used; the session itself is still up.

    The daemon logs it and goes on (``except QmpQueryError``); only ``QmpClosedError``
    ends a session.
    """


class QmpTimeoutError(QmpQueryError):
    """A QMP command got no reply within its timeout (QEMU frozen or overloaded)."""


class QmpCommandError(QmpQueryError):
    """QEMU replied to a command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"{command}: {error_class}: {desc}")


class QmpReplyError(QmpQueryError):
    """A QMP reply or event did not have the shape QEMU's schema promises."""


class CommandNotAllowed(QmpQueryError):
    """The command allow-list refused to send this command to QEMU."""


class SinkError(QmpDirtyError):
    """A telemetry sink could not proceed (bad TLS files, unreadable password)."""


class PayloadError(QmpDirtyError):
    """A payload read back from the broker (retained state) does not validate against
    its model: ``qmpdirty admit`` cannot judge on it."""


class AddressError(QmpDirtyError, ValueError):
    """A QMP address (``unix:PATH``, ``tcp:HOST:PORT``) that does not parse. Also a
    ``ValueError``, so that a config validator reports it as a problem of its key."""


class InternalError(QmpDirtyError):
    """An invariant inside qmpdirty does not hold (a bug): never caused by what QEMU,
    the broker or the operator sent."""


class RangeInputError(QmpDirtyError, ValueError):
    """IOVA mappings or a range count that the kernel's DMA-logging code would refuse
    (overlaps, negative values, a count that is not a u32)."""


class UsageError(QmpDirtyError):
    """A bad command-line argument or input file (``qmpdirty ranges``: exit 2)."""
