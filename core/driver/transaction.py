"""One use of the line, the steps a plan yields, and the one translation of resource errors.

A driver's operations are *plans*: generator functions that ``yield`` steps and receive their
results. A :class:`Transaction` is one exclusive use of the shared port or VISA resource (a
command, its reply, its parser); a :class:`Pause` lets time pass between two of them (a poll
loop waiting for a motion). :mod:`daqhub.driver.runner` executes the same plan blocking (v2) or
awaited (v4), so the protocol logic never knows which flavor runs it, even when an operation
spans many transactions and waits in between.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
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


def checked_read_timeout(timeout: float, what: str) -> float:
    """How long a read inside a transaction may wait for bytes: bounded like every wait in
    the core, and more than nothing. None is pyserial's "block for ever": one lost reply
    then held a v2 call for good and the port with it, so every v4 transaction on the port
    failed "busy"; 0 returns before any reply can come. ``what`` names whose timeout it is
    in the ValueError (``"Tc1.read_timeout"``)."""
    try:
        if timeout > 0:
            return checked_timeout(timeout)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"{what} must be a finite number of seconds > 0 (at most "
                     f"{MAX_TIMEOUT_S:g}), not {timeout!r}")


#: What a reply parser's exception must be for the reply to count as garbled: a ValueError
#: is a parser's own word that the reply has the wrong form (``float("warm")``), and the
#: others are what parsing a garbled reply trips on (a failed match subscripted, an unknown
#: code looked up, a short split, ``int()`` of an overflowed float). A parser's bug raises
#: the same ones, so the message names the parser and the line that raised; any other
#: exception (``AttributeError`` of ``None.group``, ``NameError``) is left a bug.
GARBLED_REPLY_ERRORS: tuple[type[Exception], ...] = (
    ValueError, TypeError, KeyError, IndexError, ArithmeticError)


def parse_reply(parse: Callable[[str], T], text: str, instrument_id: str, command: str) -> T:
    """Apply a reply parser; its :data:`GARBLED_REPLY_ERRORS` become a
    :class:`DriverReplyError` (code ``"garbled"``) naming the instrument, the command, the
    reply, the parser and where in it the error was raised."""
    try:
        return parse(text)
    except DriverError:
        raise
    except GARBLED_REPLY_ERRORS as exc:
        what = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise DriverReplyError(instrument_id, command,
                               f"garbled reply {text!r}: {what} ({_raised_in(parse, exc)})",
                               "garbled") from exc


def _raised_in(parse: Callable[[str], Any], exc: BaseException) -> str:
    """``parser NAME, at FILE:LINE in FUNCTION``: the parser, and the innermost frame of what
    it raised (none for a builtin such as ``float``). Only the line tells a parser's bug from
    a garbled reply, since both raise a TypeError or an IndexError."""
    name = parser_name(parse)
    frames = list(traceback.walk_tb(exc.__traceback__))[1:]  # [0]: parse_reply's own call
    if not frames:
        return f"parser {name}"
    frame, line = frames[-1]
    code = frame.f_code
    return f"parser {name}, at {Path(code.co_filename).name}:{line} in {code.co_name}"


def parser_name(parse: Callable[..., Any]) -> str:
    """A reply parser as error messages name it: a function's qualified name, else (a
    callable object) its class's."""
    return getattr(parse, "__qualname__", None) or type(parse).__qualname__
