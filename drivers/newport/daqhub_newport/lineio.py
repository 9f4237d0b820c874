"""Line-oriented command/reply exchange shared by the ESP300 and 1830-C protocols.

Both instruments speak ASCII lines over RS-232 and neither repeats the command in its reply,
so the only way to keep replies matched to questions is to read each reply right after its
query, inside one transaction, and to throw away anything left on the line from an earlier
exchange (a reply that came in after its reader gave up) before asking anything new.

Every read here is bounded by the port's read timeout (``io.timeout``); a missing, truncated
or garbled reply becomes a :class:`DriverError` that names the instrument, the command and
what arrived, never a hang and never a silently wrong number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from daqhub.instrument import DriverError
from daqhub.resources.errors import PortDisconnectedError, ResourceError, ResourceTimeoutError
from daqhub.resources.serial import SharedSerialPort
from daqhub.specs import InstrumentContext

#: A plain decimal or exponent number as both Newport instruments print them
#: (``5.32``, ``-15.24``, ``+.75E-9``, ``1.23E-6``, ``0``). ``float()`` alone would also take
#: ``nan``, ``inf`` and ``1_000``, which no instrument sends and which mean line noise here.
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


class LineIO(Protocol):
    """The part of the core's ``PortIO`` (a pyserial port inside a transaction) used here."""

    name: str

    def write(self, data: bytes) -> int | None: ...
    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes: ...
    def reset_input_buffer(self) -> None: ...

    @property
    def timeout(self) -> float | None: ...

    @timeout.setter
    def timeout(self, value: float | None) -> None: ...


T = TypeVar("T")
Transaction = Callable[[LineIO], T]


@dataclass(frozen=True)
class Op(Generic[T]):
    """One transaction ready to run: what a flavor hands to ``port.(a)transaction``.

    Built by the flavor-neutral session, so a flavor method is one line: run the op.
    """

    what: str  # shown as the port holder's activity in timeout reports
    fn: Transaction[T]
    urgent: bool = False


class DriverTimeoutError(DriverError, TimeoutError):
    """The instrument did not answer (or did not finish) within a bounded wait.

    A ``TimeoutError`` too, so callers that handle timeouts generically catch it, and so the
    serial manager does not mistake it for a vanished device.
    """

    def __init__(self, instrument_id: str, command: str, message: str,
                 code: str | int | None = None) -> None:
        DriverError.__init__(self, instrument_id, command, message, code)


class DriverDisconnectedError(DriverError, ConnectionError):
    """The port vanished under a command (or was already gone); the reply, if any, is lost.

    A ``ConnectionError`` too, like the core's ``PortDisconnectedError`` it wraps: the core
    reopens the port in the background and the instrument decides whether to retry.
    """

    def __init__(self, instrument_id: str, command: str, message: str,
                 code: str | int | None = None) -> None:
        DriverError.__init__(self, instrument_id, command, message, code)


@contextmanager
def named_errors(instrument_id: str, what: str) -> Iterator[None]:
    """Turn the port's errors into DriverErrors that name the instrument and the command.

    The serial manager's errors name the port and the holder; a user reading a log wants to
    know which instrument failed doing what. The original error stays chained as the cause.
    """
    try:
        yield
    except PortDisconnectedError as exc:
        raise DriverDisconnectedError(instrument_id, what, str(exc), code="disconnected") from exc
    except ResourceTimeoutError as exc:
        raise DriverTimeoutError(instrument_id, what, str(exc), code="busy") from exc
    except ResourceError as exc:
        raise DriverError(instrument_id, what, str(exc), code="port") from exc


def begin(io: LineIO, reply_timeout: float) -> None:
    """Start a transaction: our read timeout, and nothing stale left to misread as a reply.

    The timeout is only touched when it differs, because pyserial reconfigures a native port
    (a termios call) on every assignment and the port restores its own value afterwards.
    """
    if io.timeout != reply_timeout:
        io.timeout = reply_timeout
    io.reset_input_buffer()


def send(io: LineIO, command: str, terminator: bytes) -> None:
    io.write(command.encode("ascii") + terminator)


def read_reply(io: LineIO, instrument_id: str, command: str, terminator: bytes) -> str | None:
    """The next reply line without its terminator, or None if nothing at all arrived in time.

    None (rather than an exception) lets the caller ask the instrument's error state why it
    stayed silent: both instruments answer a refused query with silence, not with an error text.
    A partial line is a truncated reply and raises at once.
    """
    raw = io.read_until(terminator)
    if not raw:
        return None
    if not raw.endswith(terminator):
        raise DriverError(
            instrument_id, command,
            f"truncated reply on {io.name}: got {raw!r} and then nothing for {io.timeout} s "
            f"(a reply ends with {terminator!r})", code="truncated")
    body = raw[: -len(terminator)]
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DriverError(instrument_id, command,
                          f"garbled reply on {io.name}: {raw!r} is not ASCII text",
                          code="garbled") from None
    if not text.isprintable():
        raise DriverError(instrument_id, command,
                          f"garbled reply on {io.name}: {raw!r} holds control characters",
                          code="garbled")
    return text.strip()


def no_reply(io: LineIO, instrument_id: str, command: str) -> DriverTimeoutError:
    return DriverTimeoutError(
        instrument_id, command,
        f"no reply on {io.name} within {io.timeout} s (waited for the instrument to answer "
        f"{command!r}; is it powered, cabled and set to the right baud rate?)",
        code="timeout")


def parse_number(text: str, instrument_id: str, command: str) -> float:
    if not _NUMBER.match(text):
        raise DriverError(instrument_id, command,
                          f"garbled reply: expected a number, got {text!r}", code="garbled")
    return float(text)


def parse_int(text: str, instrument_id: str, command: str, low: int, high: int) -> int:
    """An integer reply within ``low..high`` (instruments print ``1``, some ``1.0`` or ``01``)."""
    value = parse_number(text, instrument_id, command)
    if value != int(value) or not low <= value <= high:
        raise DriverError(instrument_id, command,
                          f"garbled reply: expected an integer {low}..{high}, got {text!r}",
                          code="garbled")
    return int(value)


def serial_port_of(ctx: InstrumentContext) -> SharedSerialPort:
    """The shared port the core handed over (both Newport instruments are serial only)."""
    if ctx.port is None:
        raise ValueError(f"{ctx.instrument_id}: {ctx.type_name} needs a serial port (port = ...)")
    return ctx.port


def run_op(port: SharedSerialPort, instrument_id: str, op: Op[T]) -> T:
    """Run one protocol step as a transaction of ``instrument_id`` (v2: in this thread)."""
    with named_errors(instrument_id, op.what):
        return port.transaction(op.fn, owner=instrument_id, what=op.what, urgent=op.urgent)


async def arun_op(port: SharedSerialPort, instrument_id: str, op: Op[T]) -> T:
    """The same for v4 actors: on the port's worker thread, the event loop stays free."""
    with named_errors(instrument_id, op.what):
        return await port.atransaction(op.fn, owner=instrument_id, what=op.what,
                                       urgent=op.urgent)
