"""Text lines over a shared port: the exchange of instruments that speak ASCII lines.

Such an instrument does not repeat the command in its reply, so the only way to keep replies
matched to questions is to read each reply right after its query, inside one transaction, and
to drop whatever an earlier exchange left on the line (a reply that came after its reader gave
up) before asking anything new. Every read is bounded by the port's read timeout; a missing,
truncated or garbled reply is an error naming the instrument, the command and what arrived,
never a hang and never a silently wrong number. :class:`~.session.Session`'s default exchange
is made of these; a driver whose instrument answers some queries with silence (and says why
elsewhere: an error FIFO, a status byte) calls them itself.

Dropping what is on the line is not enough after a reply was given up on: it may arrive
later, after the next exchange began, and be read as that exchange's answer (a position
taken for a velocity, another axis' reading for this one's). An instrument with a query
whose answer is known (a firmware text) registers it with :func:`resync_by`; from a reply
given up on until that answer comes back, :func:`begin` first asks it and skips every line
before it, so a late reply is skipped instead of misread. A line without such a query is
waited out instead: :func:`begin` drops every line until the line stays quiet for a read
timeout. That skips a reply at most a read timeout later than the last line heard (a later
one is still misread: the 1830-C's driver, whose answers all change, counts the replies it
is owed instead); it costs one read timeout after each reply given up on, which a dead
instrument pays on every attempt.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..instrument import DriverReplyError, DriverTimeoutError
from ..resources.timeouts import MAX_TIMEOUT_S
from .transaction import checked_read_timeout

#: A plain decimal or exponent number as instruments print them (``5.32``, ``-15.24``,
#: ``+.75E-9``, ``0``). ``float()`` alone would also take ``nan``, ``inf``, ``1_000`` and
#: blanks, which no instrument sends and which mean line noise here.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


#: lines read past while resynchronising before giving up (a line that keeps talking)
RESYNC_MAX_LINES = 64


@dataclass
class _Resync:
    """How a line gets back in step, and whether it is out of step (see the module doc)."""

    message: bytes  # the query, with its command end (b"": none, wait for quiet)
    answer: str     # its known reply, stripped
    end: bytes
    encoding: str
    late: bool = False   # a reply was given up on and has not been accounted for
    unanswered: int = 0  # marker queries sent whose answers have not been read yet


_resyncs: weakref.WeakKeyDictionary[Any, _Resync] = weakref.WeakKeyDictionary()


def resync_by(io: Any, command: str, answer: str, command_end: bytes, reply_end: bytes,
              encoding: str = "ascii") -> None:
    """Make ``command`` (answered ``answer``, as just read) the line's resynchronisation.

    Called by a driver once it has read the answer in step (at connect); every instrument on
    the line shares it, since a late reply can be read by any of them.
    """
    state = _resyncs.get(io)
    message = command.encode(encoding) + command_end
    if state is None or (state.message, state.answer) != (message, answer):
        # a line already out of step stays so (its late replies come before this answer)
        _resyncs[io] = _Resync(message, answer, reply_end, encoding,
                               late=state is not None and state.late)


def begin(io: Any, timeout: float, instrument_id: str = "") -> None:
    """Start a transaction: our read timeout, and nothing stale left to misread as a reply.

    The timeout is only assigned when it differs: pyserial reconfigures a native port (a
    termios call) on every assignment, and the port restores its own value afterwards. A
    line out of step (a reply given up on) is resynchronised first; if that fails, the
    transaction fails with it (a :class:`DriverTimeoutError` or :class:`DriverReplyError`)
    and the next one tries again. A timeout that is not a finite number of seconds > 0 is a
    ValueError naming the instrument, before anything is sent: None would wait for ever on a
    lost reply, with the port held (:func:`~.transaction.checked_read_timeout`).
    """
    try:
        bounded = 0.0 < timeout <= MAX_TIMEOUT_S  # the test inlined: every exchange runs it
    except TypeError:
        bounded = False
    if not bounded:
        checked_read_timeout(timeout, f"{instrument_id or io.name}: the read timeout")
    if io.timeout != timeout:
        io.timeout = timeout
    io.reset_input_buffer()
    state = _resyncs.get(io)
    if state is not None and state.late:
        if state.message:
            _resync(io, state, instrument_id)
        else:
            _wait_for_quiet(io, state, instrument_id)


def _wait_for_quiet(io: Any, state: _Resync, instrument_id: str) -> None:
    """Drop every line until the line is quiet for a read timeout (no marker query)."""
    for _ in range(RESYNC_MAX_LINES):
        if not io.read_until(state.end):
            state.late = False
            return
    raise DriverReplyError(instrument_id, "", f"{io.name} is out of step (a reply was given "
                           f"up on) and sent more than {RESYNC_MAX_LINES} lines without a "
                           f"pause of {io.timeout} s", "garbled")


def _resync(io: Any, state: _Resync, instrument_id: str) -> None:
    """Ask the marker query, skip every line up to its answer (and up to the answers of the
    markers earlier attempts sent, which come first on a line that answers in order).

    Answers may also be lost (a reply cut short): a line quiet for a read timeout after an
    answer came has nothing more to say, so it is in step; one quiet from the start may still
    send this marker's answer, but no earlier one is waited for.
    """
    command = state.message.decode(state.encoding).strip()
    io.write(state.message)
    state.unanswered += 1
    heard = answered = False
    for _ in range(RESYNC_MAX_LINES):
        raw = io.read_until(state.end)
        if not raw.endswith(state.end):
            if answered:
                state.late, state.unanswered = False, 0
                return
            if not heard:
                state.unanswered = 1
            raise DriverTimeoutError(
                instrument_id, command, f"{io.name} is out of step (a reply was given up "
                f"on) and the answer to {command} that resynchronises it did not come "
                f"within {io.timeout} s", "timeout")
        heard = True
        if raw[: -len(state.end)].decode(state.encoding, "replace").strip() == state.answer:
            answered = True
            state.unanswered -= 1
            if state.unanswered <= 0:
                state.late, state.unanswered = False, 0
                return
    raise DriverReplyError(instrument_id, command, f"{io.name} is out of step and sent more "
                           f"than {RESYNC_MAX_LINES} lines without the answer to {command}",
                           "garbled")


def gave_up(io: Any, end: bytes) -> None:
    """A reply on ``io`` was given up on (none, or a broken one): the line is out of step.
    ``end`` ends its replies (to wait out a line without a marker query)."""
    state = _resyncs.get(io)
    if state is None:
        state = _resyncs[io] = _Resync(b"", "", end, "ascii")
    state.late = True


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
    try:
        text = line_text(io, raw, instrument_id, command, end, max_reply=max_reply,
                         encoding=encoding)
    except DriverReplyError:  # cut short or garbled: the rest, or the answer, may still come
        gave_up(io, end)
        raise
    if text is None:  # silence: the answer may still come
        gave_up(io, end)
    return text


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
    """A reply parser: a plain, finite number (:data:`NUMBER`), or ValueError. ``1E999``
    has a number's form but overflows to ``inf``: line noise like any other."""
    if not NUMBER.fullmatch(text):
        raise ValueError("expected a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("expected a number within a float's range")
    return value


def integer(low: int, high: int) -> Callable[[str], int]:
    """A reply parser for an integer within ``low..high`` (``1``, ``1.0`` or ``01``)."""
    def parse(text: str) -> int:
        value = number(text)
        if value != int(value) or not low <= value <= high:
            raise ValueError(f"expected an integer {low}..{high}")
        return int(value)
    return parse
