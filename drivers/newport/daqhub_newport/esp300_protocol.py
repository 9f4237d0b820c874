"""Newport ESP300 wire protocol: command text, reply parsing, units and the error FIFO.

Written from the protocol reference. Pure functions over a line ``io`` so that both flavors
run exactly the same bytes; what to do with an error (raise it, or keep it for the axis that
is waiting on a motion) is the axis session's business, not this module's.

The controller never answers a set command and answers a refused query with silence; every
problem lands in a 10-deep error FIFO that ``TB?`` pops one entry at a time
(``code, timestamp, MESSAGE``). So after each exchange the FIFO is drained until it reports
code 0, and each error is attributed by its code: ``100*axis + n`` belongs to that axis,
1-99 are general errors of the command just sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from daqhub.driver import parse_reply
from daqhub.driver.lines import integer, no_reply, number, read_line, send
from daqhub.instrument import DriverError

COMMAND_END = b"\r"
REPLY_END = b"\r\n"
#: Depth of the controller's error FIFO; a drain reads at most this many entries plus the 0.
FIFO_DEPTH = 10
AXES = (1, 2, 3)

#: ``SN`` unit codes and the unit names daqhub uses for them (channel units, lab files).
UNIT_NAMES: dict[int, str] = {
    0: "counts", 1: "steps", 2: "mm", 3: "um", 4: "in", 5: "mil", 6: "uin",
    7: "deg", 8: "grad", 9: "rad", 10: "mrad", 11: "urad",
}
UNIT_CODES: dict[str, int] = {name: code for code, name in UNIT_NAMES.items()}

#: General error texts (the protocol reference), used only when the controller's own text
#: is missing.
GENERAL_ERRORS: dict[int, str] = {
    0: "NO ERROR DETECTED", 1: "PCI COMMUNICATION TIME-OUT",
    2: "RS-232 COMMUNICATION TIME-OUT", 4: "EMERGENCY STOP ACTIVATED",
    6: "COMMAND DOES NOT EXIST", 7: "PARAMETER OUT OF RANGE", 8: "CABLE INTERLOCK ERROR",
    9: "AXIS NUMBER OUT OF RANGE", 23: "SERVO CYCLE TICK FAILURE", 25: "DOWNLOAD IN PROGRESS",
    26: "STORED PROGRAM NOT STARTED", 27: "COMMAND NOT ALLOWED", 28: "FLASH AREA FULL",
    35: "PROGRAM NOT FOUND", 37: "AXIS NUMBER MISSING", 38: "COMMAND PARAMETER MISSING",
    39: "PROGRAM LABEL NOT FOUND", 40: "LAST COMMAND CANNOT BE REPEATED",
    41: "MAX LABELS EXCEEDED",
}
#: Axis error texts by ``code % 100`` (the code itself is ``100*axis + n``).
AXIS_ERRORS: dict[int, str] = {
    0: "MOTOR TYPE NOT DEFINED", 1: "PARAMETER OUT OF RANGE", 2: "AMPLIFIER FAULT",
    3: "FOLLOWING ERROR THRESHOLD EXCEEDED", 4: "POSITIVE HARDWARE LIMIT DETECTED",
    5: "NEGATIVE HARDWARE LIMIT DETECTED", 6: "POSITIVE SOFTWARE LIMIT DETECTED",
    7: "NEGATIVE SOFTWARE LIMIT DETECTED", 8: "MOTOR / STAGE NOT CONNECTED",
    9: "FEEDBACK SIGNAL FAULT", 10: "MAXIMUM VELOCITY EXCEEDED",
    11: "MAXIMUM ACCELERATION EXCEEDED", 13: "MOTOR NOT ENABLED", 15: "MAXIMUM JERK EXCEEDED",
    16: "MAXIMUM DAC OFFSET EXCEEDED", 17: "CRITICAL SETTINGS ARE PROTECTED",
    18: "STAGE DEVICE ERROR", 19: "STAGE DATA INVALID", 20: "HOMING ABORTED",
    21: "MOTOR CURRENT NOT DEFINED", 24: "SPEED OUT OF RANGE", 25: "INVALID TRAJECTORY MASTER",
    26: "PARAMETER CHANGE NOT ALLOWED", 27: "INVALID TRAJECTORY MODE FOR HOMING",
    28: "INVALID ENCODER STEP RATIO", 29: "DIGITAL I/O INTERLOCK DETECTED",
    30: "COMMAND NOT ALLOWED DURING HOMING", 31: "COMMAND NOT ALLOWED DUE TO GROUP ASSIGNMENT",
    32: "INVALID TRAJECTORY MODE FOR MOVING",
}


@dataclass(frozen=True)
class EspError:
    """One entry of the controller's error FIFO."""

    code: int
    timestamp: int | None  # servo ticks (400 us) since the controller's reset
    message: str

    @property
    def axis(self) -> int:
        """The axis the error belongs to, 0 for a general (controller-wide) error."""
        return self.code // 100 if self.code >= 100 else 0

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


def known_message(code: int) -> str:
    """The manual's text for ``code`` (a fallback when ``TB?`` carries no text)."""
    if code >= 100:
        return AXIS_ERRORS.get(code % 100, f"AXIS {code // 100} ERROR {code % 100}")
    return GENERAL_ERRORS.get(code, f"ERROR {code}")


#: The largest magnitude :func:`plain` writes (13 digits before the point, well within the
#: 80-character command line), and its last decimal: a positive velocity or acceleration
#: smaller than that would go out as 0, which the controller refuses (``x01``).
NUMBER_MAX = 1e12
NUMBER_STEP = 1e-9


def plain(value: float) -> str:
    """A parameter as the controller reads it: plain decimal, never an exponent.

    The manual shows only plain decimals (``2PA1000``, ``3PA10.0``); ``repr`` would print
    ``1e-05``, which is not promised to parse. Refused here (ValueError, nothing sent): a
    value no controller could take.
    """
    if not math.isfinite(value) or abs(value) > NUMBER_MAX:
        raise ValueError(f"needs a finite number of at most {NUMBER_MAX:g} in magnitude (an "
                         f"80-character command line), got {value!r}")
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


#: Commands that start a motion: faults seen afterwards belong to them (see esp300_axis).
MOTIONS = frozenset({"PA", "PR", "OR", "MV", "MT"})


def mnemonic_of(cmd: str) -> str:
    """``2MV+`` -> ``MV``: the mnemonic after the axis prefix, upper case."""
    return cmd.lstrip(" 0123456789")[:2].upper()


#: the direction argument of ``MV`` and ``MT``
DIRECTIONS = ("+", "-")


def ordered_limits(left: float, right: float) -> None:
    """Refuse software limits (``SL``, ``SR``) with no travel between them, the lab file's
    ``limits`` and ``set_limits``'s alike, before either is sent: they go out one at a time,
    and a pair refused halfway would leave the axis with one new limit and one old."""
    if not left < right:
        raise ValueError(f"limits must be [left, right] with left < right, got "
                         f"[{left!r}, {right!r}]")


def unit_name(text: str) -> str:
    """``SN?``: the unit code as daqhub names it."""
    return UNIT_NAMES[int(number(text))]


def parse_error(text: str, instrument_id: str) -> EspError:
    """One ``TB?`` reply: ``108, 451322, MOTOR / STAGE NOT CONNECTED``.

    A bare code (the ``TE?`` form) is accepted too; the message then comes from the manual.
    """
    parts = [p.strip() for p in text.split(",", 2)]
    code = parse_reply(integer(0, 999), parts[0], instrument_id, "TB?")
    timestamp = None
    if len(parts) >= 2 and parts[1]:
        timestamp = parse_reply(integer(0, 2**63 - 1), parts[1], instrument_id, "TB?")
    message = parts[2] if len(parts) == 3 and parts[2] else known_message(code)
    return EspError(code, timestamp, message)


def drain_errors(io: Any, instrument_id: str) -> list[EspError]:
    """Pop the whole error FIFO (oldest first); empty when the controller reports no error.

    Bounded: the FIFO holds at most :data:`FIFO_DEPTH` entries, so a controller that keeps
    reporting errors past that is answering something else and the exchange is garbled.
    """
    found: list[EspError] = []
    for _ in range(FIFO_DEPTH + 1):
        send(io, "TB?", COMMAND_END)
        text = read_line(io, instrument_id, "TB?", REPLY_END)
        if text is None:
            raise no_reply(io, instrument_id, "TB?")
        entry = parse_error(text, instrument_id)
        if entry.code == 0:
            return found
        found.append(entry)
    raise DriverError(instrument_id, "TB?",
                      f"the error FIFO did not empty after {FIFO_DEPTH + 1} reads (it holds "
                      f"{FIFO_DEPTH}); last entries: {'; '.join(map(str, found[-3:]))}",
                      code="garbled")


def describe(errors: list[EspError]) -> str:
    """One line for a DriverError message; the first error is the one that counts."""
    first, rest = errors[0], errors[1:]
    text = f"{first.message} (controller error {first.code}"
    text += f" at tick {first.timestamp})" if first.timestamp is not None else ")"
    if rest:
        text += "; then " + "; ".join(map(str, rest))
    return text


def as_driver_error(instrument_id: str, cmd: str, errors: list[EspError]) -> DriverError:
    return DriverError(instrument_id, cmd, describe(errors), code=errors[0].code)
