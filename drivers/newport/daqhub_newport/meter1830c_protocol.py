"""Newport 1830-C wire protocol: commands, reply parsing and the status byte.

Written from the protocol reference. The meter never answers a set command and never prints
an error: it sets bit 0 (parameter error) or bit 1 (command error) of its status byte and stays
silent. So a set command is followed by ``Q?`` in the same transaction, and an error bit
becomes a :class:`DriverError` naming the command that caused it; a query met with silence is
explained the same way, once the line is quiet. Saturation and over-range (bits 2 and 3) are
facts about a reading, not errors: they travel with the sample as metadata.
"""

from __future__ import annotations

import math
from typing import Any

from daqhub.driver import DriverError, lines, parse_reply
from daqhub.driver.lines import integer, line_text, no_reply, number, read_line, send
from daqhub.measurement import MetaValue

TERMINATOR = b"\n"  # both ways (the protocol reference: LF on RS-232, VISA drivers use \n)

UNIT_CODES: dict[str, int] = {"W": 1, "dB": 2, "dBm": 3, "REL": 4}
UNIT_NAMES: dict[int, str] = {code: name for name, code in UNIT_CODES.items()}
#: ``F1`` slow (16-reading average), ``F2`` medium (4), ``F3`` fast (no averaging).
FILTER_CODES: dict[str, int] = {"slow": 1, "medium": 2, "fast": 3}
FILTER_NAMES: dict[int, str] = {code: name for name, code in FILTER_CODES.items()}
AUTO_RANGE = 0
RANGES = range(0, 9)  # 0 = auto, 1 (most gain) .. 8 (least)

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

STATUS_ERRORS: dict[int, str] = {
    PARAMETER_ERROR: "parameter error (status bit 0): the meter refused the command's argument",
    COMMAND_ERROR: "command error (status bit 1): the meter does not know the command",
}


def status_error(instrument_id: str, command: str, status: int) -> DriverError | None:
    """The error the status byte reports for ``command`` (coded by its error bits), or None."""
    bits = status & ERROR_BITS
    if not bits:
        return None
    text = "; ".join(msg for bit, msg in STATUS_ERRORS.items() if bits & bit)
    return DriverError(instrument_id, command, f"{text} (status byte {status})", code=bits)


def reading_flags(status: int) -> dict[str, MetaValue]:
    """What the status byte says about the reading taken with it (only the flags that hold).

    Read as the meter's present condition: the driver never clears these two bits (``C``),
    which would drop the flag from a repeated read of the same clipped sample. Whether the
    real meter latches them until ``C`` is not documented (the protocol reference).
    """
    flags: dict[str, MetaValue] = {}
    if status & SATURATED:
        flags["saturated"] = True
    if status & OVER_RANGE:
        flags["over_range"] = True
    return flags


def read_status(io: Any, instrument_id: str) -> int:
    send(io, "Q?", TERMINATOR)
    text = read_line(io, instrument_id, "Q?", TERMINATOR)
    if text is None:
        raise no_reply(io, instrument_id, "Q?")
    return parse_reply(integer(0, 255), text, instrument_id, "Q?")


def echo_off(io: Any, instrument_id: str) -> bool:
    """``E0`` whatever the meter's echo state; True if it was echoing.

    A meter left in echo mode (``E1``) sends every character back as it arrives, the line end
    as CR LF (as the sister 2832-C's manual describes RS-232 echo), so ``E0<CR><LF>`` comes
    before the reply to the ``Q?`` that follows, and nothing after it. A meter that was not
    echoing sends nothing for ``E0``; one without echo support flags an error, cleared here.
    """
    send(io, "E0", TERMINATOR)
    send(io, "Q?", TERMINATOR)
    raw = io.read_until(TERMINATOR)
    echoed = raw.endswith(TERMINATOR) and raw.rstrip(b"\r\n").upper() == b"E0"
    if echoed:
        raw = io.read_until(TERMINATOR)
    text = line_text(io, raw, instrument_id, "Q?", TERMINATOR)
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


def query(io: Any, instrument_id: str, command: str) -> str:
    """A query's reply; silence is explained by the status byte, or is a timeout."""
    send(io, command, TERMINATOR)
    text = read_line(io, instrument_id, command, TERMINATOR)
    if text is None:
        lines.begin(io, io.timeout, instrument_id)  # in step: a late reply is no status byte
        try:
            status = read_status(io, instrument_id)
        except DriverError:  # silent too, or a reply later still (the status comes after it)
            lines.gave_up(io, TERMINATOR)
            raise no_reply(io, instrument_id, command) from None
        err = status_error(instrument_id, command, status)
        if err is not None:
            clear_status(io)
            raise err
        raise no_reply(io, instrument_id, command)
    return text


def parse_reading(text: str, instrument_id: str, command: str = "D?") -> float:
    """``D?`` in any unit: ``5E-9``, ``+.75E-9``, ``1.23E-6`` (W) or ``-15.24`` (dB, dBm, REL)."""
    return parse_reply(number, text, instrument_id, command)


def whole_nm(nm: float) -> str:
    """A wavelength as the meter takes it: whole nanometres, 1..9999 (``W``'s argument)."""
    rounded = round(nm) if math.isfinite(nm) else 0  # round() of inf raises OverflowError
    if abs(nm - rounded) > 1e-6 or not 1 <= rounded <= 9999:
        raise ValueError(f"must be a whole number of nm in 1..9999, got {nm!r}")
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
