"""What a lab file says about a TC-1, and what the core needs to know before connecting.

Kept apart from the flavors so that ``plugin.py`` and both flavors read one declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daqhub.measurement import ChannelSpec
from daqhub.resources import SharedSerialPort
from daqhub.specs import InstrumentContext

from .protocol import REPLY_TIMEOUT_S, SETPOINT_MAX_K, SETPOINT_MIN_K

TYPE_NAME = "acme.tc1"
DESCRIPTION = "ACME TC-1 temperature controller (temperature in K, heater in %)"
CAPABILITIES = ("Readable",)

CHANNELS = [
    ChannelSpec("temperature", "scalar", "K", description="sensor temperature (TEMP?)"),
    ChannelSpec("heater", "scalar", "%", description="heater output (HEAT?)"),
]

#: The block's own keys; the core adds id, type, poll_hz, enabled, port and baudrate.
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "setpoint_k": {"type": "number", "minimum": SETPOINT_MIN_K, "maximum": SETPOINT_MAX_K,
                       "description": "setpoint sent on connect (K); absent: left as it is"},
    },
    "required": [],
}

#: The TC-1's RS-232 link: 9600 8N1, no handshake. ``read_timeout`` bounds every reply wait.
SERIAL_SETTINGS: dict[str, Any] = {
    "baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1, "rtscts": False,
    "read_timeout": REPLY_TIMEOUT_S,
}


@dataclass(frozen=True)
class Settings:
    setpoint_k: float | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """From a validated block; checks the range again for callers that skip validation."""
        value = config.get("setpoint_k")
        if value is None:
            return cls()
        if not SETPOINT_MIN_K <= float(value) <= SETPOINT_MAX_K:
            raise ValueError(f"setpoint_k must be {SETPOINT_MIN_K} to {SETPOINT_MAX_K} K, "
                             f"got {value!r}")
        return cls(float(value))


def serial_port_of(ctx: InstrumentContext) -> SharedSerialPort:
    """The port the core opened for this instrument (the TC-1 only speaks serial)."""
    if ctx.port is None:
        raise ValueError(f"{ctx.instrument_id}: {ctx.type_name} needs a serial port (port = ...)")
    return ctx.port
