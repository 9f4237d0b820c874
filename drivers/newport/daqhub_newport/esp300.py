"""Newport ESP300, one axis per instrument: the driver both flavors are made from.

The protocol table is below; what a command means for the controller's error FIFO (drained
after every exchange, errors routed to the axis they belong to, faults of a motion raised by
the wait that follows it) is :class:`~.esp300_axis.AxisSession`'s, which every transaction
here goes through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any, TypeVar

from daqhub.driver import (
    Command,
    Delegate,
    DriverError,
    Parameter,
    Pause,
    Sample,
    Session,
    Transaction,
    command,
    parse_reply,
)
from daqhub.specs import InstrumentContext

from . import esp300_config as config
from .esp300_axis import AxisSession, ErrorRouter
from .esp300_protocol import MOTIONS, direction, mnemonic_of, plain, unit_name
from .lineio import LineIO, number

T = TypeVar("T")
log = logging.getLogger(__name__)
Plan = Generator[Any, Any, T]


class Esp300Axis(Session):
    """One axis of an ESP300 (Motion capability).

    :meth:`stop` and :meth:`abort` take the port's urgent lane, and the waits poll ``MD?``
    with pauses in between, so a stop sent meanwhile (another thread in v2, a control message
    in v4) gets through.
    """

    type_name = config.TYPE_NAME
    description = config.DESCRIPTION
    channels = staticmethod(config.channels)
    config_schema = config.CONFIG_SCHEMA
    capabilities = ("Motion", "Readable")
    serial_settings = config.SERIAL_SETTINGS

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
    #: ST and AB take the port's urgent lane; raw commands claim their axis' errors
    moves = Delegate("axis", AxisSession, "move_absolute", "move_relative", "stop", "abort",
                     "raw_command", "raw_query")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.options = config.AxisSettings.from_config(ctx.config)
        self.fields = {"axis": self.options.axis}
        self.identity = {"model": "ESP300", "axis": self.options.axis}
        self.axis = AxisSession(self.id, self.options,
                                self.resource.shared(ErrorRouter.KEY, ErrorRouter))

    def execute(self, io: LineIO, tx: Transaction[Any]) -> Any:
        """Declared commands go through the axis' exchanges (error FIFO drained after each);
        one that starts a motion forgets earlier faults, so later ones are its own."""
        if tx.fn is not None:
            return tx.fn(io)
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
        return self.axis.connect()

    def poll(self) -> Plan[dict[str, Sample]]:
        position, meta = yield self.axis.poll()
        return {"position": Sample(position, meta)}

    def close(self) -> Plan[None]:
        """Stop this axis: nothing should keep moving once nobody watches it."""
        try:
            yield self.axis.stop()
        except DriverError as exc:
            log.warning("%s: could not stop axis %d on close: %s", self.id, self.axis.axis, exc)

    # ------------------------------------------------------------------ Motion
    @command
    def home(self, timeout: float = 30.0) -> Plan[None]:
        """Search home (``OR``) and wait for it; on timeout stop the axis and raise."""
        yield self.axis.start_home()
        if not (yield from self._wait(timeout)):
            yield self.axis.stop()
            raise self.axis.motion_timeout(timeout, homing=True)
        self.axis.raise_faults()

    @command
    def is_moving(self) -> Plan[bool]:
        """``MD?``: whether the axis is still moving."""
        return not (yield self.axis.motion_done())

    @command
    def wait_until_done(self, timeout: float = 30.0) -> Plan[float]:
        """Wait until the axis stops; raise what went wrong during the motion; final position."""
        if not (yield from self._wait(timeout)):
            raise self.axis.motion_timeout(timeout, homing=False)
        self.axis.raise_faults()
        return (yield type(self).position.query(self))  # type: ignore[no-any-return]

    def _wait(self, timeout: float) -> Plan[bool]:
        deadline = time.monotonic() + timeout
        while not (yield self.axis.motion_done()):
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

