"""What a lab file says about a Newport 1830-C, and the channel it gets.

The ``power`` channel's unit is fixed when the lab file is loaded (storage lays out its files
before the first sample), so it comes from ``units`` here; the driver sets the meter to it on
connect and always samples the channel in it, even after a script changed the front-panel
units with ``set_units`` (see :mod:`.meter1830c_session`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daqhub.measurement import ChannelSpec

from .meter1830c_protocol import FILTER_CODES, RANGES, UNIT_CODES

TYPE_NAME = "newport.1830c"
DESCRIPTION = "Newport 1830-C optical power meter (power in W, dB, dBm or REL)"

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "units": {"type": "string", "enum": list(UNIT_CODES), "default": "W",
                  "description": "unit of the power channel, set on the meter on connect"},
        "wavelength_nm": {"type": "integer", "minimum": 1, "maximum": 9999,
                          "description": "calibration wavelength set on connect (W)"},
        "range": {"type": "integer", "minimum": RANGES.start, "maximum": RANGES.stop - 1,
                  "description": "0 = auto range, 1 (most gain) .. 8 (least), set on connect"},
        "filter": {"type": "string", "enum": list(FILTER_CODES),
                   "description": "averaging: slow (16 readings), medium (4), fast (none)"},
        "attenuator": {"type": "boolean", "description": "attenuator on/off (A1/A0)"},
        "reply_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 30,
                          "default": 1.0, "description": "seconds to wait for a reply line"},
    },
    "required": [],
}

#: pyserial defaults of the meter's RS-232 link (9600 8N1, no handshake).
SERIAL_SETTINGS: dict[str, Any] = {
    "baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1, "rtscts": False,
    "read_timeout": 1.0,
}


@dataclass(frozen=True)
class MeterSettings:
    units: str = "W"
    wavelength_nm: int | None = None
    range: int | None = None
    filter: str | None = None
    attenuator: bool | None = None
    reply_timeout: float = 1.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MeterSettings:
        """Settings from a validated block; checks again what a direct caller might skip."""
        units = config.get("units", "W")
        if units not in UNIT_CODES:
            raise ValueError(f"1830-C units {units!r} unknown; use one of {', '.join(UNIT_CODES)}")
        range_ = config.get("range")
        if range_ is not None and range_ not in RANGES:
            raise ValueError(f"1830-C range must be 0 (auto) or 1..8, got {range_!r}")
        filter_ = config.get("filter")
        if filter_ is not None and filter_ not in FILTER_CODES:
            raise ValueError(f"1830-C filter {filter_!r} unknown; use one of "
                             f"{', '.join(FILTER_CODES)}")
        wavelength = config.get("wavelength_nm")
        attenuator = config.get("attenuator")
        return cls(units=units, wavelength_nm=None if wavelength is None else int(wavelength),
                   range=range_, filter=filter_,
                   attenuator=None if attenuator is None else bool(attenuator),
                   reply_timeout=float(config.get("reply_timeout", 1.0)))


def channels(config: Mapping[str, Any]) -> list[ChannelSpec]:
    return [ChannelSpec("power", "scalar", config.get("units", "W"),
                        description="optical power reading (D?)")]
