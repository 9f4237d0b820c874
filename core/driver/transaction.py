"""One use of the line, the steps a plan yields, and the one translation of resource errors.

A driver's operations are *plans*: generator functions that ``yield`` steps and receive their
results. A :class:`Transaction` is one exclusive use of the shared port or VISA resource (a
command, its reply, its parser); a :class:`Pause` lets time pass between two of them (a poll
loop waiting for a motion). :mod:`daqhub.driver.runner` executes the same plan blocking (v2) or
awaited (v4), so the protocol logic never knows which flavor runs it, even when an operation
spans many transactions and waits in between.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ..instrument import (
    DriverDisconnectedError,
    DriverError,
    DriverReplyError,
    DriverTimeoutError,
)
from ..resources.errors import (
    PortDisconnectedError,
    PortOpenError,
    ReplyTimeoutError,
    ResourceClosedError,
    ResourceError,
    ResourceTimeoutError,
)
from ..resources.timeouts import MAX_TIMEOUT_S, checked_timeout

T = TypeVar("T")


@dataclass(frozen=True)
class Transaction(Generic[T]):
    """One exclusive use of the line: ``command`` is sent and ``parse`` turns its reply into
    the result.

    ``parse`` None: a command without a reply (result None). ``fn`` replaces the session's
    exchange for anything a line exchange does not cover (several lines, binary frames, a bus
    router): it gets the open port (or pyvisa resource) and returns the result; ``command`` is
    then what error messages and the port's holder report name. ``urgent`` jumps the queue
    (stop, abort); ``timeout`` bounds the wait for the resource (None: the resource's default).
    """

    command: str
    parse: Callable[[str], T] | None = None
    urgent: bool = False
    timeout: float | None = None
    fn: Callable[[Any], T] | None = None


@dataclass(frozen=True)
class Pause:
    """Let ``seconds`` pass (``time.sleep`` in v2, ``asyncio.sleep`` in v4). Result: None."""

    seconds: float


#: An operation: a generator of steps whose return value is the operation's result. A plain
#: :class:`Transaction` (or None, nothing to do) is accepted wherever a plan is.
Plan: TypeAlias = Generator[Any, Any, T]


def driver_error(exc: BaseException, instrument_id: str, command: str) -> DriverError:
    """The one translation of the core's resource errors into the driver error family.

    The resource's own message (which port, who held it, for how long) is kept, prefixed by
    the instrument and the command a user reading the log is looking for; the original stays
    the ``__cause__``. A :class:`DriverError` passes through unchanged.
    """
    if isinstance(exc, DriverError):
        return exc
    text = str(exc)
    err: DriverError
    if isinstance(exc, PortDisconnectedError | PortOpenError | ResourceClosedError):
        err = DriverDisconnectedError(instrument_id, command, text, "disconnected")
    elif isinstance(exc, ReplyTimeoutError):
        err = DriverTimeoutError(instrument_id, command, text, "timeout")
    elif isinstance(exc, ResourceTimeoutError):
        err = DriverTimeoutError(instrument_id, command, text, "busy")
    elif isinstance(exc, ResourceError):
        err = DriverError(instrument_id, command, text, "port")
    elif isinstance(exc, TimeoutError):  # a pyvisa VisaIOError timeout subclasses neither
        err = DriverTimeoutError(instrument_id, command, text, "timeout")
    else:
        err = DriverError(instrument_id, command, f"{type(exc).__name__}: {text}", "io")
    err.__cause__ = exc
    return err


def checked_wait(instrument_id: str, timeout: float) -> float:
    """A plan's own wait (a motion's end, a search): bounded like every wait in the core.
    NaN never compares past a deadline, so ``wait_until_done(nan)`` waited forever; it, inf
    and negative times are refused naming the instrument, before anything is sent."""
    try:
        return checked_timeout(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"{instrument_id}: timeout must be a number of seconds between 0 and "
                         f"{MAX_TIMEOUT_S:g}, not {timeout!r}") from None


def parse_reply(parse: Callable[[str], T], text: str, instrument_id: str, command: str) -> T:
    """Apply a reply parser; its ValueError (a reply of the wrong form; ArithmeticError for
    one out of range, such as ``int()`` of an overflowed float) becomes a
    :class:`DriverReplyError` naming the instrument, the command and the reply."""
    try:
        return parse(text)
    except DriverError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
        raise DriverReplyError(instrument_id, command,
                               f"garbled reply {text!r}: {exc}", "garbled") from exc
