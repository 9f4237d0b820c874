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
from collections.abc import Callable
from typing import Protocol, TypeVar

from daqhub.driver import DriverError, DriverTimeoutError, parse_reply

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
LineFn = Callable[[LineIO], T]


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
    return reply_text(io, io.read_until(terminator), instrument_id, command, terminator)


def reply_text(io: LineIO, raw: bytes, instrument_id: str, command: str, terminator: bytes
               ) -> str | None:
    """:func:`read_reply` for a line already read."""
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


def number(text: str) -> float:
    """A reply parser for the toolkit: a plain number, or ValueError."""
    if not _NUMBER.match(text):
        raise ValueError("expected a number")
    return float(text)


def integer(low: int, high: int) -> Callable[[str], int]:
    """A reply parser for an integer within ``low..high`` (``1``, ``1.0`` or ``01``)."""
    def parse(text: str) -> int:
        value = number(text)
        if value != int(value) or not low <= value <= high:
            raise ValueError(f"expected an integer {low}..{high}")
        return int(value)
    return parse


def parse_number(text: str, instrument_id: str, command: str) -> float:
    return parse_reply(number, text, instrument_id, command)


def parse_int(text: str, instrument_id: str, command: str, low: int, high: int) -> int:
    """An integer reply within ``low..high`` (instruments print ``1``, some ``1.0`` or ``01``)."""
    return parse_reply(integer(low, high), text, instrument_id, command)
