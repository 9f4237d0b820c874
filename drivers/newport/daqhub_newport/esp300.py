"""Newport ESP300, one axis per instrument: the driver both flavors are made from.

The protocol table is below; what a command means for the controller's error FIFO (drained
after every exchange, errors routed to the axis they belong to, faults of a motion raised by
the wait that follows it) is :class:`~.esp300_axis.AxisSession`'s, which every transaction
here goes through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from daqhub.driver import (
    Command,
    DriverError,
    Parameter,
    Pause,
    Plan,
    Sample,
    Session,
    Transaction,
    command,
    parse_reply,
)
from daqhub.driver.lines import number
from daqhub.measurement import ChannelSpec
from daqhub.specs import InstrumentContext

from .esp300_axis import AxisSession, ErrorRouter, raw_axis
from .esp300_protocol import AXES, MOTIONS, UNIT_CODES, direction, mnemonic_of, plain, unit_name

log = logging.getLogger(__name__)


def _channels(config: Mapping[str, Any]) -> list[ChannelSpec]:
    return [ChannelSpec("position", "scalar", config.get("units", "mm"),
                        description=f"actual position (TP?) of axis {config.get('axis', '?')}")]


class Esp300Axis(Session):
    """One axis of an ESP300 (Motion capability).

    One instrument per axis (``axis = 1``), not one with a list of axes: the Motion
    capability is a single axis, so a script drives every stage the same way whatever it is
    wired to; each axis gets its own ``position`` channel in its own unit; and a lab can
    migrate one axis to v4 while the others stay on v2. The axes of one controller name the
    same ``port`` and share it through the core's serial manager. The channel unit is fixed
    when the lab file is loaded (storage lays out its files first), so it comes from
    ``units``, and :meth:`connect` checks it against the controller's ``SN?``.

    :meth:`stop` and :meth:`abort` take the port's urgent lane, and the waits poll ``MD?``
    with pauses in between, so a stop sent meanwhile (another thread in v2, a control message
    in v4) gets through.
    """

    type_name = "newport.esp300"
    description = "Newport ESP300 motion controller, one axis (position in the axis' SN units)"
    channels = staticmethod(_channels)
    config_schema: Mapping[str, Any] = {
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
    capabilities = ("Motion", "Readable")
    #: the ESP300's RS-232 link: 19200 8N1, RTS/CTS
    serial_settings = {"baudrate": 19200, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "rtscts": True, "read_timeout": 0.5}

    position = Parameter("{axis}TP?", parse=number, setting=False, doc="actual position")
    units = Parameter("{axis}SN?", parse=unit_name, doc="the axis' unit (SN?)")
    velocity = Parameter("{axis}VA?", "{axis}VA{}", parse=number, format=plain,
                         unit="units/s")
    acceleration = Parameter("{axis}AC?", "{axis}AC{}", parse=number, format=plain,
                             unit="units/s^2")
    left_limit = Parameter("{axis}SL?", "{axis}SL{}", parse=number, format=plain,
                           doc="left software travel limit")
    right_limit = Parameter("{axis}SR?", "{axis}SR{}", parse=number, format=plain,
                            doc="right software travel limit")
    firmware = Parameter("VE?", parse=str, setting=False, doc="controller firmware (VE?)")
    stage = Parameter("{axis}ID?", parse=str, setting=False, doc="stage model and serial")
    define_position = Command("{axis}DH{}", "position", format=plain,
                              doc="call the current position `position` (0: zero here)")
    jog = Command("{axis}MV{}", "direction", format=direction,
                  doc="move indefinitely, '+' or '-', until stop")
    move_to_limit = Command("{axis}MT{}", "direction", format=direction,
                            doc="move to the '+' or '-' hardware travel limit")
    motor_on = Command("{axis}MO", doc="power the motor")
    motor_off = Command("{axis}MF", doc="switch the motor off")
    move_absolute = Command("{axis}PA{}", "position", format=plain,
                            doc="start a move to `position` (axis units); wait_until_done waits")
    move_relative = Command("{axis}PR{}", "distance", format=plain,
                            doc="start a move by `distance` (axis units)")
    #: ST and AB take the port's urgent lane and skip the FIFO drain (AxisSession.write_fn)
    stop = Command("{axis}ST", urgent=True, doc="decelerate this axis to a stop")
    abort = Command("AB", urgent=True, doc="abort the motion of every axis of the controller")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        limits = self.options.limits
        if limits is not None and not limits[0] < limits[1]:
            raise ValueError(f"{self.id}: ESP300 limits must be [left, right] with left < "
                             f"right, got {limits}")
        self.fields = {"axis": self.options.axis}
        self.identity = {"model": "ESP300", "axis": self.options.axis}
        self.axis = AxisSession(self.id, self.options,
                                self.resource.shared(ErrorRouter.KEY, ErrorRouter))

    def execute(self, io: Any, tx: Transaction[Any]) -> Any:
        """Declared commands go through the axis' exchanges (error FIFO drained after each);
        one that starts a motion forgets earlier faults, so later ones are its own."""
        if tx.fn is not None:
            return tx.fn(io)
        if tx.urgent:
            return self.axis.write_fn(tx.command)(io)
        if tx.parse is None and mnemonic_of(tx.command) in MOTIONS:
            self.axis.motion_fn(tx.command)(io)
            return None
        if tx.parse is None:
            self.axis.set_fn(tx.command)(io)
            return None
        parse = tx.parse
        return self.axis.query_fn(
            tx.command, lambda text: parse_reply(parse, text, self.id, tx.command))(io)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Transaction[None]:
        return Transaction("connect", fn=self.axis.connect_fn())

    def poll(self) -> Plan[dict[str, Sample]]:
        position, meta = yield Transaction("poll", fn=self.axis.poll_fn())
        return {"position": Sample(position, meta)}

    def close(self) -> Plan[None]:
        """Stop this axis: nothing should keep moving once nobody watches it."""
        try:
            yield type(self).stop.transaction(self)
        except DriverError as exc:
            log.warning("%s: could not stop axis %d on close: %s", self.id, self.axis.axis, exc)

    # ------------------------------------------------------------------ Motion
    @command
    def home(self, timeout: float = 30.0) -> Plan[None]:
        """Search home (``OR``) and wait for it; on timeout stop the axis and raise."""
        yield self.write(self.axis.home_command())
        if not (yield from self._wait(timeout)):
            yield type(self).stop.transaction(self)
            raise self.axis.motion_timeout(timeout, homing=True)
        self.axis.raise_faults()

    @command
    def is_moving(self) -> Plan[bool]:
        """``MD?``: whether the axis is still moving."""
        return not (yield self._done())

    @command
    def wait_until_done(self, timeout: float = 30.0) -> Plan[float]:
        """Wait until the axis stops; raise what went wrong during the motion; final position."""
        if not (yield from self._wait(timeout)):
            raise self.axis.motion_timeout(timeout, homing=False)
        self.axis.raise_faults()
        return (yield type(self).position.query(self))  # type: ignore[no-any-return]

    def _done(self) -> Transaction[bool]:
        md = self.axis.cmd("MD?")
        return self.query(md, self.axis.parse_done(md))

    def _wait(self, timeout: float) -> Plan[bool]:
        deadline = time.monotonic() + timeout
        while not (yield self._done()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            yield Pause(min(self.options.poll_interval, left))
        return True

    # ------------------------------------------------------------------ more of the ESP300
    @command
    def set_limits(self, left: float, right: float) -> Plan[None]:
        """Software travel limits (``SL``, ``SR``) in the axis' units."""
        yield type(self).left_limit.assign(self, left)
        yield type(self).right_limit.assign(self, right)

    @command
    def limits(self) -> Plan[tuple[float, float]]:
        """Software travel limits (``SL?``, ``SR?``): (left, right)."""
        return ((yield type(self).left_limit.query(self)),
                (yield type(self).right_limit.query(self)))

    @command
    def raw_command(self, text: str) -> Transaction[None]:
        """Send a command this driver does not wrap (no axis prefix added); raise its errors."""
        return Transaction(text, fn=self.axis.set_fn(text, also=raw_axis(text)))

    @command
    def raw_query(self, text: str) -> Transaction[str]:
        """Send a query this driver does not wrap and return its reply line."""
        return Transaction(text, fn=self.axis.query_fn(text, str, also=raw_axis(text)))
