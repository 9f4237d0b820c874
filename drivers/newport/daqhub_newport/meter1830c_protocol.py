"""Newport 1830-C wire protocol: commands, reply parsing and the status byte.

Written from the protocol reference. The meter never answers a set command and never prints
an error: it sets bit 0 (parameter error) or bit 1 (command error) of its status byte and stays
silent. So a set command is followed by ``Q?`` in the same transaction, and an error bit
becomes a :class:`DriverError` naming the command that caused it. Saturation, over-range and
busy (bits 2, 3 and 5) are facts about a reading, not errors: they travel with the sample as
metadata.

Replies carry no name and none has a known text (every answer is a number that changes), so
a reply given up on could be taken for a later query's answer. The meter answers each query
it knows with one line (the reference's command table) and a refused one with none, in
order, so the driver counts the replies still owed on the line (:func:`ask`) and reads as
many lines as it is owed before it asks anything new (:func:`begin`): a late reply is
skipped, up to :data:`LOST_AFTER_TIMEOUTS` read timeouts late. A query of the table is
always answered, so its silence is a timeout, and ``Q?`` is never asked into a line still
owed a reply; a query the driver does not wrap may be refused, so ``Q?`` goes with it
(:func:`query_with_status`).
"""

from __future__ import annotations

import math
import time
import weakref
from collections import deque
from typing import Any

from daqhub.driver import DriverError, DriverTimeoutError, lines, parse_reply
from daqhub.driver.lines import integer, line_text, no_reply, number, send
from daqhub.measurement import MetaValue

TERMINATOR = b"\n"  # both ways (the protocol reference: LF on RS-232, VISA drivers use \n)

UNIT_CODES: dict[str, int] = {"W": 1, "dB": 2, "dBm": 3, "REL": 4}
UNIT_NAMES: dict[int, str] = {code: name for name, code in UNIT_CODES.items()}
#: ``F1`` slow (16-reading average), ``F2`` medium (4), ``F3`` fast (no averaging).
FILTER_CODES: dict[str, int] = {"slow": 1, "medium": 2, "fast": 3}
FILTER_NAMES: dict[int, str] = {code: name for name, code in FILTER_CODES.items()}
AUTO_RANGE = 0
RANGES = range(0, 9)  # 0 = auto, 1 (most gain) .. 8 (least)
#: What ``Wnnnn`` takes: whole nanometres, at most four digits (the detector head's own
#: range is narrower; the meter refuses the rest itself).
WAVELENGTH_NM = (1, 9999)

# Status byte (Q?) bits.
PARAMETER_ERROR = 1
COMMAND_ERROR = 2
SATURATED = 4
OVER_RANGE = 8
MESSAGE_AVAILABLE = 16
BUSY = 32
SERVICE_REQUEST = 64
READ_DONE = 128
ERROR_BITS = PARAMETER_ERROR | COMMAND_ERROR

#: A reply owed for this many read timeouts after its query is given up as lost (a meter
#: switched off, a reply cut short) and no longer waited for: the bound on how late a reply
#: can come and still be skipped, and on how long a lost one keeps the line out of step.
LOST_AFTER_TIMEOUTS = 10

STATUS_ERRORS: dict[int, str] = {
    PARAMETER_ERROR: "parameter error (status bit 0): the meter refused the command's argument",
    COMMAND_ERROR: "command error (status bit 1): the meter does not know the command",
}

#: per open link (:func:`_link`): (when, query) of each query whose reply has not been read
#: yet, oldest first
_owed: weakref.WeakKeyDictionary[Any, deque[tuple[float, str]]] = weakref.WeakKeyDictionary()


def _link(io: Any) -> Any:
    """The open link under a transaction's ``io``: the core's port's pyserial handle, which a
    reopened port replaces (replies owed on the old link never come on the new one); a
    test's line stands for itself."""
    return getattr(io, "raw", io)


def status_error(instrument_id: str, command: str, status: int) -> DriverError | None:
    """The error the status byte reports for ``command`` (coded by its error bits), or None."""
    bits = status & ERROR_BITS
    if not bits:
        return None
    text = "; ".join(msg for bit, msg in STATUS_ERRORS.items() if bits & bit)
    return DriverError(instrument_id, command, f"{text} (status byte {status})", code=bits)


def reading_flags(status: int, busy: bool) -> dict[str, MetaValue]:
    """What the status byte read right before ``D?`` says about that reading (only the flags
    that hold); ``busy`` from :func:`from_busy_spell`.

    The bits' meanings are the manual's (the protocol reference, [M]). Saturation and
    over-range are read as the meter's present condition: the driver never clears them
    (``C``), which would drop the flag from a repeated read of the same clipped sample.
    Whether the real meter latches them until ``C`` is not documented (the reference).
    """
    flags: dict[str, MetaValue] = {}
    if status & SATURATED:
        flags["saturated"] = True
    if status & OVER_RANGE:
        flags["over_range"] = True
    if busy:
        flags["busy"] = True
    return flags


def from_busy_spell(status: int, was_busy: bool) -> bool:
    """Whether the reading ``D?`` gives after this status byte dates from a spell when the
    meter took no readings: it is busy (bit 5: auto-ranging, power-up or auto-calibration),
    or it was at the last byte read or held until just now (``was_busy``) and has no new
    reading yet (bit 7, read done, clear: set by a new valid reading, cleared by ``D?`` and
    ``C``). Both bits are the manual's ([M] in the protocol reference); what ``D?`` returns
    while busy is not documented (the simulator gives the reading from before), so such a
    reading is flagged rather than passed off as current. A ``D?`` or ``C`` in between (a
    script's ``power()``) makes a fresh reading look old: flagged too, never the reverse.
    """
    return bool(status & BUSY) or (was_busy and not status & READ_DONE)


def begin(io: Any, timeout: float, instrument_id: str, command: str) -> None:
    """Start a transaction: read the replies still owed, then :func:`lines.begin` (our read
    timeout, and whatever else is waiting dropped).

    Owed replies are read, not dropped with the rest: a late reply already waiting would
    leave the count owing it, and the count would then take the next answer for it. Those
    owed for more than :data:`LOST_AFTER_TIMEOUTS` read timeouts are given up as lost. If one
    still owed does not come within a read timeout, the transaction fails before anything
    is sent (:class:`DriverTimeoutError`, naming ``command``); the next one reads on.
    """
    owed = _owed.get(_link(io))
    if owed:
        io.timeout = timeout  # checked by lines.begin below (the lab file bounds it too)
        lost_before = time.monotonic() - LOST_AFTER_TIMEOUTS * timeout
        while owed and owed[0][0] < lost_before:
            owed.popleft()
        while owed:
            if not io.read_until(TERMINATOR).endswith(TERMINATOR):
                asked, late = owed[0]
                raise DriverTimeoutError(
                    instrument_id, command, f"{io.name} still owes the reply to {late}, given "
                    f"up on {time.monotonic() - asked:.1f} s ago, and it did not come within "
                    f"{timeout} s; it is read before anything new is asked, so that it is "
                    f"never taken for another answer (is the instrument powered, cabled and "
                    f"set to the right baud rate?)", "timeout")
            owed.popleft()
    lines.begin(io, timeout, instrument_id)


def ask(io: Any, command: str) -> None:
    """Send a query: its reply is owed until read (by :func:`query`, or the next
    :func:`begin` if given up on)."""
    send(io, command, TERMINATOR)
    link = _link(io)
    owed = _owed.get(link)
    if owed is None:
        owed = _owed[link] = deque()
    owed.append((time.monotonic(), command))


def _read_reply(io: Any, instrument_id: str, command: str, raw: bytes | None = None
                ) -> str | None:
    """The next line (``raw`` if already read), as the reply the oldest owed query waits for;
    None if nothing came within a read timeout, and the reply stays owed.

    A line cut short gets one more read timeout for its end, so that a late end is not read
    as the next answer; if it does not come either, it is taken as lost (the reply is no
    longer owed), and the reply raises ``truncated``, as a noisy one raises ``garbled``.
    """
    if raw is None:
        raw = io.read_until(TERMINATOR)
    if not raw:
        return None
    if not raw.endswith(TERMINATOR):
        raw += io.read_until(TERMINATOR)
    owed = _owed.get(_link(io))
    if owed:
        owed.popleft()
    return line_text(io, raw, instrument_id, command, TERMINATOR)


def query(io: Any, instrument_id: str, command: str) -> str:
    """The reply to a query of the protocol table. The meter answers every one, so silence
    is a timeout; the reply stays owed, and the next transaction reads it first."""
    ask(io, command)
    text = _read_reply(io, instrument_id, command)
    if text is None:
        raise no_reply(io, instrument_id, command)
    return text


def read_status(io: Any, instrument_id: str) -> int:
    return parse_reply(integer(0, 255), query(io, instrument_id, "Q?"), instrument_id, "Q?")


def query_with_status(io: Any, instrument_id: str, command: str) -> str:
    """The reply to a query the driver does not wrap, which the meter may refuse: silently,
    with an error bit. ``Q?`` goes right after it, so a reply line and a status byte come
    back, or the status byte alone, whose error bit is raised here (then cleared).

    A line then silence for a read timeout is the status byte of a refusal if it is one
    with an error bit; else it is the reply, and the status byte stays owed. A reply that
    reads as such a byte (``1``, say) followed by its status byte more than a read timeout
    later would be taken for a refusal, with that byte left uncounted: the one guess here.
    """
    ask(io, command)
    ask(io, "Q?")
    text = _read_reply(io, instrument_id, command)
    if text is None:
        raise no_reply(io, instrument_id, command)
    status_text = _read_reply(io, instrument_id, "Q?")
    if status_text is None:
        try:
            status = integer(0, 255)(text)
        except ValueError:
            return text
        if not status & ERROR_BITS:
            return text
        _owed[_link(io)].pop()  # that line was the status byte: the refused query owes nothing
    else:
        status = parse_reply(integer(0, 255), status_text, instrument_id, "Q?")
    err = status_error(instrument_id, command, status)
    if err is not None:
        clear_status(io)
        raise err
    return text


def is_query(text: str) -> bool:
    """Whether the meter answers ``text``: its queries end with ``?`` (the reference's
    command table), spaces aside (the meter ignores them)."""
    return "".join(text.split()).endswith("?")


def echo_off(io: Any, instrument_id: str) -> bool:
    """``E0`` whatever the meter's echo state; True if it was echoing.

    A meter left in echo mode (``E1``) sends every character back as it arrives, the line end
    as CR LF (as the sister 2832-C's manual describes RS-232 echo), so ``E0<CR><LF>`` comes
    before the reply to the ``Q?`` that follows, and nothing after it. A meter that was not
    echoing sends nothing for ``E0``; one without echo support flags an error, cleared here.
    """
    send(io, "E0", TERMINATOR)
    ask(io, "Q?")
    raw = io.read_until(TERMINATOR)
    echoed = raw.endswith(TERMINATOR) and raw.rstrip(b"\r\n").upper() == b"E0"
    if echoed:
        raw = io.read_until(TERMINATOR)
    text = _read_reply(io, instrument_id, "Q?", raw)
    if text is None:
        raise no_reply(io, instrument_id, "Q?")
    if parse_reply(integer(0, 255), text, instrument_id, "Q?") & ERROR_BITS:
        clear_status(io)
    return echoed


def clear_status(io: Any) -> None:
    send(io, "C", TERMINATOR)


def set_command(io: Any, instrument_id: str, command: str) -> None:
    """Send a set command and raise what the status byte says went wrong (then clear it)."""
    send(io, command, TERMINATOR)
    status = read_status(io, instrument_id)
    err = status_error(instrument_id, command, status)
    if err is not None:
        clear_status(io)
        raise err


def parse_reading(text: str, instrument_id: str, command: str = "D?") -> float:
    """``D?`` in any unit: ``5E-9``, ``+.75E-9``, ``1.23E-6`` (W) or ``-15.24`` (dB, dBm, REL)."""
    return parse_reply(number, text, instrument_id, command)


def whole_nm(nm: float) -> str:
    """A wavelength as the meter takes it: whole nanometres in :data:`WAVELENGTH_NM`
    (``W``'s argument)."""
    low, high = WAVELENGTH_NM
    rounded = round(nm) if math.isfinite(nm) else 0  # round() of inf raises OverflowError
    if abs(nm - rounded) > 1e-6 or not low <= rounded <= high:
        raise ValueError(f"must be a whole number of nm in {low}..{high}, got {nm!r}")
    return str(rounded)


def wavelength_command(nm: float, instrument_id: str) -> str:
    """``W800``."""
    try:
        return f"W{whole_nm(nm)}"
    except ValueError as exc:
        raise ValueError(f"{instrument_id}: wavelength {exc}") from None


def range_command(range_: int, instrument_id: str) -> str:
    if range_ not in RANGES:
        raise ValueError(f"{instrument_id}: range must be 0 (auto) or 1..8, got {range_!r}")
    return f"R{range_}"


def units_command(units: str, instrument_id: str) -> str:
    if units not in UNIT_CODES:
        raise ValueError(f"{instrument_id}: units must be one of {', '.join(UNIT_CODES)}, "
                         f"got {units!r}")
    return f"U{UNIT_CODES[units]}"


def filter_command(speed: str, instrument_id: str) -> str:
    if speed not in FILTER_CODES:
        raise ValueError(f"{instrument_id}: filter must be one of {', '.join(FILTER_CODES)}, "
                         f"got {speed!r}")
    return f"F{FILTER_CODES[speed]}"
