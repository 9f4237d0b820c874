"""The ACME TC-1 wire protocol (README, "Protocol"), written once for both flavors.

Every public function that takes ``io`` first is a *transaction function*: a flavor hands it
to the core's shared port (``port.transaction`` in a v2 thread, ``port.atransaction`` from a
v4 actor), which runs it with the line to itself. Reading a reply right after its command, in
the same transaction, is what keeps replies matched to questions when several instruments
share the line; whatever an earlier exchange left behind (a reply that arrived after its
reader gave up) is thrown away first.

Every read is bounded by :data:`REPLY_TIMEOUT_S`; a missing, truncated or garbled reply and
every ``ERR`` reply become a :class:`~daqhub.instrument.DriverError` that names the instrument,
the command and what arrived: never a hang, never a silently wrong number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from daqhub.instrument import DriverError

from .errors import Tc1TimeoutError

COMMAND_END = b"\r"
REPLY_END = b"\r\n"
#: Longest reply we accept (the identity is about 30 bytes); more is line noise.
MAX_REPLY = 64
#: The TC-1 answers within 100 ms; waiting longer only delays the error.
REPLY_TIMEOUT_S = 0.5

SETPOINT_MIN_K = 3.0
SETPOINT_MAX_K = 500.0

#: The TC-1's own error codes (``ERR <code> <message>``) and what they mean for a user.
ERROR_CODES: dict[int, str] = {
    1: "the TC-1 does not know this command",
    2: "the TC-1 refused the argument (missing, or not a plain decimal number)",
    3: f"value out of range (setpoint {SETPOINT_MIN_K:g} to {SETPOINT_MAX_K:g} K)",
    4: "command line too long (more than 32 characters)",
}

_ERROR = re.compile(r"^ERR (\d+) ?(.*)$")
_KELVIN = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_PERCENT = re.compile(r"^\d+(?:\.\d+)?$")
_IDENTITY = re.compile(r"^ACME,TC-1,([A-Za-z0-9]+),(\S+)$")


class LineIO(Protocol):
    """The part of the core's ``PortIO`` (the open port inside a transaction) used here."""

    name: str

    def write(self, data: bytes) -> int | None: ...
    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes: ...
    def reset_input_buffer(self) -> None: ...

    @property
    def timeout(self) -> float | None: ...

    @timeout.setter
    def timeout(self, value: float | None) -> None: ...


@dataclass(frozen=True)
class Identity:
    serial: str
    firmware: str


@dataclass(frozen=True)
class Reading:
    temperature_k: float
    heater_percent: float


# --- one exchange ---------------------------------------------------------------------------

def exchange(io: LineIO, instrument_id: str, command: str) -> str:
    """Send ``command`` and return its reply line; an ``ERR`` reply raises.

    The port restores its own read timeout after the transaction, and it is only set when it
    differs (each assignment reconfigures a real port).
    """
    if io.timeout != REPLY_TIMEOUT_S:
        io.timeout = REPLY_TIMEOUT_S
    io.reset_input_buffer()
    io.write(command.encode("ascii") + COMMAND_END)
    raw = io.read_until(REPLY_END, MAX_REPLY)
    if not raw:
        raise Tc1TimeoutError(
            instrument_id, command,
            f"no reply on {io.name} within {io.timeout} s (is the TC-1 powered, cabled and "
            f"set to 9600 baud?)", "timeout")
    if not raw.endswith(REPLY_END):
        if len(raw) >= MAX_REPLY:
            raise DriverError(instrument_id, command,
                              f"garbled reply on {io.name}: {raw!r} and no end of line",
                              "garbled")
        raise DriverError(instrument_id, command,
                          f"truncated reply on {io.name}: got {raw!r}, then nothing for "
                          f"{io.timeout} s (a reply ends with CR LF)", "truncated")
    body = raw[: -len(REPLY_END)]
    text = body.decode("ascii", errors="replace")
    if not body or not body.isascii() or not text.isprintable():
        raise DriverError(instrument_id, command, f"garbled reply on {io.name}: {raw!r}",
                          "garbled")
    error = _ERROR.match(text)
    if error:
        code = int(error.group(1))
        meaning = ERROR_CODES.get(code, "an error code this driver does not know")
        raise DriverError(instrument_id, command, f"{meaning} (the TC-1 replied {text!r})",
                          code)
    return text


def parse_kelvin(text: str, instrument_id: str, command: str) -> float:
    if not _KELVIN.match(text):
        raise DriverError(instrument_id, command,
                          f"garbled reply: expected a temperature like +293.150, got {text!r}",
                          "garbled")
    return float(text)


def parse_percent(text: str, instrument_id: str, command: str) -> float:
    value = float(text) if _PERCENT.match(text) else math.nan
    if not 0.0 <= value <= 100.0:
        raise DriverError(instrument_id, command,
                          f"garbled reply: expected a percentage 0.0 to 100.0, got {text!r}",
                          "garbled")
    return value


def setpoint_command(kelvin: float) -> str:
    """``SETP 77.000``: the TC-1 takes a plain decimal and keeps 0.001 K."""
    if not math.isfinite(kelvin):
        raise ValueError(f"a setpoint must be a finite number of kelvin, got {kelvin!r}")
    return f"SETP {kelvin:.3f}"


# --- transaction functions ------------------------------------------------------------------

def identify(io: LineIO, instrument_id: str) -> Identity:
    """Check that an ACME TC-1 answers on the line."""
    text = exchange(io, instrument_id, "*IDN?")
    match = _IDENTITY.match(text)
    if not match:
        raise DriverError(instrument_id, "*IDN?",
                          f"not an ACME TC-1 on {io.name}: it answered {text!r}", "identity")
    return Identity(match.group(1), match.group(2))


def start(io: LineIO, instrument_id: str, setpoint_k: float | None) -> Identity:
    """What both flavors do on connect: check the identity, then set the configured setpoint."""
    identity = identify(io, instrument_id)
    if setpoint_k is not None:
        set_setpoint(io, instrument_id, setpoint_k)
    return identity


def poll(io: LineIO, instrument_id: str) -> Reading:
    """Both channels in one transaction, so nobody else's traffic comes in between."""
    temperature = parse_kelvin(exchange(io, instrument_id, "TEMP?"), instrument_id, "TEMP?")
    heater = parse_percent(exchange(io, instrument_id, "HEAT?"), instrument_id, "HEAT?")
    return Reading(temperature, heater)


def setpoint(io: LineIO, instrument_id: str) -> float:
    return parse_kelvin(exchange(io, instrument_id, "SETP?"), instrument_id, "SETP?")


def set_setpoint(io: LineIO, instrument_id: str, kelvin: float) -> None:
    command = setpoint_command(kelvin)
    reply = exchange(io, instrument_id, command)
    if reply != "OK":
        raise DriverError(instrument_id, command, f"expected OK, got {reply!r}", "garbled")
