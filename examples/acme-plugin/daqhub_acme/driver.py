"""The ACME TC-1 driver (README, "Protocol"): the protocol table, once, for both flavors.

daqhub's driver toolkit makes the v2 class and the v4 actor from :class:`Tc1`; each command
runs as one transaction on the core's shared port, whose reply is read right after its
command, so replies stay matched to questions when several instruments share the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Generator
from typing import Any

from daqhub.driver import DriverReplyError, Parameter, Session, Transaction
from daqhub.measurement import ChannelSpec

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


def kelvin(text: str) -> float:
    if not _KELVIN.match(text):
        raise ValueError("expected a temperature like +293.150")
    return float(text)


def percent(text: str) -> float:
    value = float(text) if _PERCENT.match(text) else math.nan
    if not 0.0 <= value <= 100.0:
        raise ValueError("expected a percentage 0.0 to 100.0")
    return value


def decimal(kelvin: float) -> str:
    """``77.000``: the TC-1 takes a plain decimal and keeps 0.001 K (the setpoint's declared
    range has kept out what is no finite number of kelvin)."""
    return f"{kelvin:.3f}"


class Tc1(Session):
    """An ACME TC-1 temperature controller on RS-232."""

    type_name = "acme.tc1"
    description = "ACME TC-1 temperature controller (temperature in K, heater in %)"
    capabilities = ("Readable",)
    channels = [
        ChannelSpec("temperature", "scalar", "K", description="sensor temperature (TEMP?)"),
        ChannelSpec("heater", "scalar", "%", description="heater output (HEAT?)"),
    ]
    #: The block's own keys; the core adds id, type, poll_hz, enabled, port and baudrate.
    config_schema = {"type": "object", "required": [], "properties": {
        "setpoint_k": {"type": "number", "minimum": SETPOINT_MIN_K, "maximum": SETPOINT_MAX_K,
                       "description": "setpoint sent on connect (K); absent: left as it is"}}}
    #: 9600 8N1, no handshake; the TC-1 answers within 100 ms, so 0.5 s bounds every reply.
    serial_settings = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "rtscts": False, "read_timeout": 0.5}
    command_end, reply_end, read_timeout, max_reply = b"\r", b"\r\n", 0.5, 64

    # The protocol table: polled channels are the parameters named like them.
    temperature = Parameter("TEMP?", parse=kelvin, unit="K", setting=False)
    heater = Parameter("HEAT?", parse=percent, unit="%", setting=False)
    #: ``range``: the TC-1's setpoint range (README, "Protocol"; it answers ``ERR 3``
    #: outside it), checked before sending and by ``daqhub validate``
    setpoint = Parameter("SETP?", "SETP {}", parse=kelvin, unit="K", format=decimal, ack="OK",
                         kind=float, range=(SETPOINT_MIN_K, SETPOINT_MAX_K),
                         doc="the temperature approaches it over the load's time constant")

    def check_reply(self, command: str, text: str) -> str:
        error = _ERROR.match(text)
        if error:
            code = int(error.group(1))
            meaning = ERROR_CODES.get(code, "an error code this driver does not know")
            raise DriverReplyError(self.id, command, f"{meaning} (the TC-1 replied {text!r})",
                                   code)
        return text

    def connect(self) -> Generator[Transaction[Any], Any, None]:
        """Check that a TC-1 answers, then set the configured setpoint."""
        idn = yield self.query("*IDN?")
        match = _IDENTITY.match(idn)
        if not match:
            raise DriverReplyError(self.id, "*IDN?", f"not an ACME TC-1 on "
                                   f"{self.resource.name}: it answered {idn!r}", "identity")
        self.identity = {"model": "TC-1", "serial": match.group(1), "firmware": match.group(2)}
        setpoint = self.options.setpoint_k
        if setpoint is not None:
            yield type(self).setpoint.assign(self, float(setpoint))
