"""Text lines over a shared port: the exchange of instruments that speak ASCII lines.

Such an instrument does not repeat the command in its reply, so the only way to keep replies
matched to questions is to read each reply right after its query, inside one transaction, and
to drop whatever an earlier exchange left on the line (a reply that came after its reader gave
up) before asking anything new. Every read is bounded by the port's read timeout; a missing,
truncated or garbled reply is an error naming the instrument, the command and what arrived,
never a hang and never a silently wrong number. :class:`~.session.Session`'s default exchange
is made of these; a driver whose instrument answers some queries with silence (and says why
elsewhere: an error FIFO, a status byte) calls them itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..instrument import DriverReplyError, DriverTimeoutError

#: A plain decimal or exponent number as instruments print them (``5.32``, ``-15.24``,
#: ``+.75E-9``, ``0``). ``float()`` alone would also take ``nan``, ``inf``, ``1_000`` and
#: blanks, which no instrument sends and which mean line noise here.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def begin(io: Any, timeout: float) -> None:
    """Start a transaction: our read timeout, and nothing stale left to misread as a reply.

    The timeout is only assigned when it differs: pyserial reconfigures a native port (a
    termios call) on every assignment, and the port restores its own value afterwards.
    """
    if io.timeout != timeout:
        io.timeout = timeout
    io.reset_input_buffer()


def send(io: Any, command: str, end: bytes, encoding: str = "ascii") -> None:
    io.write(command.encode(encoding) + end)


def read_line(io: Any, instrument_id: str, command: str, end: bytes, *,
              max_reply: int | None = None, encoding: str = "ascii") -> str | None:
    """The next reply line, stripped, without ``end``; None if nothing at all arrived in time.

    None rather than an exception lets a caller ask the instrument why it stayed silent; a
    partial line, an over-long one (``max_reply``) or one that is not printable text raises
    a :class:`DriverReplyError` (code ``truncated`` or ``garbled``) at once.
    """
    raw = io.read_until(end, max_reply) if max_reply else io.read_until(end)
    return line_text(io, raw, instrument_id, command, end, max_reply=max_reply,
                     encoding=encoding)


def line_text(io: Any, raw: bytes, instrument_id: str, command: str, end: bytes, *,
              max_reply: int | None = None, encoding: str = "ascii") -> str | None:
    """:func:`read_line` for bytes already read."""
    if not raw:
        return None
    if not raw.endswith(end):
        if max_reply and len(raw) >= max_reply:
            raise DriverReplyError(instrument_id, command, f"garbled reply on {io.name}: "
                                   f"{raw!r} and no end of line", "garbled")
        raise DriverReplyError(instrument_id, command, f"truncated reply on {io.name}: got "
                               f"{raw!r}, then nothing for {io.timeout} s (a reply ends with "
                               f"{end!r})", "truncated")
    try:
        text = raw[: -len(end)].decode(encoding)
    except UnicodeDecodeError:
        text = "\x00"
    if not text.isprintable():
        raise DriverReplyError(instrument_id, command, f"garbled reply on {io.name}: {raw!r}",
                               "garbled")
    return text.strip()


def no_reply(io: Any, instrument_id: str, command: str) -> DriverTimeoutError:
    return DriverTimeoutError(
        instrument_id, command, f"no reply on {io.name} within {io.timeout} s (is the "
        f"instrument powered, cabled and set to the right baud rate?)", "timeout")


def number(text: str) -> float:
    """A reply parser: a plain number (:data:`NUMBER`), or ValueError."""
    if not NUMBER.fullmatch(text):
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
