"""What a lab file says about one ESP300 axis, and the channel it gets.

One instrument per axis (``axis = 1``), not one instrument with a list of axes: the Motion
capability is a single axis with no axis argument, so a script or GUI drives every stage the
same way whatever it is wired to; each axis gets its own ``position`` channel in its own
unit; and a lab can migrate one axis to the v4 flavor while the others stay on v2. The axes
of one controller name the same ``port`` and share it through the core's serial manager, which
keeps their exchanges (and the error FIFO drains) from interleaving.

The channel unit is fixed when the lab file is loaded (storage lays out its files before the
first sample), so it comes from ``units`` here, and :meth:`connect` checks it against what the
controller reports with ``SN?`` instead of silently storing numbers in the wrong unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daqhub.measurement import ChannelSpec

from .esp300_protocol import AXES, UNIT_CODES

TYPE_NAME = "newport.esp300"
DESCRIPTION = "Newport ESP300 motion controller, one axis (position in the axis' SN units)"

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "axis": {"type": "integer", "enum": list(AXES),
                 "description": "controller axis this instrument drives (1-3); several axes of "
                                "one controller are several instruments naming the same port"},
        "units": {"type": "string", "enum": list(UNIT_CODES), "default": "mm",
                  "description": "unit of the position channel; must match the axis' SN? "
                                 "unless set_units is true"},
        "set_units": {"type": "boolean", "default": False,
                      "description": "on connect, switch the axis to `units` (SN) instead of "
                                     "refusing to start when they differ"},
        "motor_on": {"type": "boolean", "default": True,
                     "description": "power the motor (MO) on connect; the ESP300 starts off"},
        "home_mode": {"type": "integer", "minimum": 0, "maximum": 6,
                      "description": "OR search mode for home(); default: the controller's OM"},
        "velocity": {"type": "number", "exclusiveMinimum": 0,
                     "description": "VA set on connect, units/s"},
        "acceleration": {"type": "number", "exclusiveMinimum": 0,
                         "description": "AC set on connect, units/s^2"},
        "limits": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                   "description": "[left, right] software limits (SL, SR) set on connect"},
        "rtscts": {"type": "boolean", "default": True,
                   "description": "RTS/CTS handshake (the ESP300 expects it; simulators "
                                  "ignore it)"},
        "reply_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 30,
                          "default": 0.5, "description": "seconds to wait for a reply line"},
        "poll_interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 5,
                          "default": 0.02,
                          "description": "seconds between MD? polls while waiting on motion"},
    },
    "required": ["axis"],
}

#: pyserial defaults of the ESP300's RS-232 link (19200 8N1, RTS/CTS).
SERIAL_SETTINGS: dict[str, Any] = {
    "baudrate": 19200, "bytesize": 8, "parity": "N", "stopbits": 1, "rtscts": True,
    "read_timeout": 0.5,
}


@dataclass(frozen=True)
class AxisSettings:
    axis: int
    units: str = "mm"
    set_units: bool = False
    motor_on: bool = True
    home_mode: int | None = None
    velocity: float | None = None
    acceleration: float | None = None
    limits: tuple[float, float] | None = None
    rtscts: bool = True
    reply_timeout: float = 0.5
    poll_interval: float = 0.02

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AxisSettings:
        """Settings from a validated block; checks again what a direct caller might skip."""
        axis = config.get("axis")
        if axis not in AXES:
            raise ValueError(f"ESP300 axis must be one of {AXES}, got {axis!r}")
        units = config.get("units", "mm")
        if units not in UNIT_CODES:
            raise ValueError(f"ESP300 units {units!r} unknown; use one of {', '.join(UNIT_CODES)}")
        limits = config.get("limits")
        if limits is not None:
            left, right = (float(x) for x in limits)
            if not left < right:
                raise ValueError(f"ESP300 limits must be [left, right] with left < right, "
                                 f"got {list(limits)}")
            limits = (left, right)
        home_mode = config.get("home_mode")

        def optional(key: str) -> float | None:
            value = config.get(key)
            return None if value is None else float(value)

        return cls(
            axis=int(axis), units=units, set_units=bool(config.get("set_units", False)),
            motor_on=bool(config.get("motor_on", True)),
            home_mode=None if home_mode is None else int(home_mode),
            velocity=optional("velocity"), acceleration=optional("acceleration"),
            limits=limits, rtscts=bool(config.get("rtscts", True)),
            reply_timeout=float(config.get("reply_timeout", 0.5)),
            poll_interval=float(config.get("poll_interval", 0.02)),
        )


def channels(config: Mapping[str, Any]) -> list[ChannelSpec]:
    unit = config.get("units", "mm")
    return [ChannelSpec("position", "scalar", unit,
                        description=f"actual position (TP?) of axis {config.get('axis', '?')}")]
