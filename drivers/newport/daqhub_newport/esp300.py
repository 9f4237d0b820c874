"""Newport ESP300, one axis per instrument: the driver both flavors are made from.

The protocol table comes first, then the axis' exchanges, which every transaction goes
through: what a command means for the controller's error FIFO (drained after every exchange,
errors routed to the axis they belong to, faults of a motion raised by the wait that follows
it) is explained in :mod:`.esp300_axis`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from daqhub.driver import (
    Arg,
    Command,
    DriverError,
    DriverTimeoutError,
    Parameter,
    Pause,
    Plan,
    Sample,
    Session,
    Transaction,
    checked_wait,
    command,
    parse_reply,
)
from daqhub.driver.lines import begin, integer, no_reply, number, read_line, resync_by, send
from daqhub.measurement import ChannelSpec, MetaValue
from daqhub.specs import InstrumentContext

from .esp300_axis import IDLE_ERROR_CHECK_S, ErrorRouter, raw_axis
from .esp300_protocol import (
    AXES,
    COMMAND_END,
    DIRECTIONS,
    FIFO_DEPTH,
    MOTIONS,
    NUMBER_MAX,
    NUMBER_STEP,
    REPLY_END,
    UNIT_CODES,
    UNIT_NAMES,
    EspError,
    as_driver_error,
    describe,
    drain_errors,
    mnemonic_of,
    ordered_limits,
    plain,
    unit_name,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
#: the numbers a position takes (:func:`~.esp300_protocol.plain` sends no more)
NUMBERS = (-NUMBER_MAX, NUMBER_MAX)
POSITION = Arg(float, range=NUMBERS)


def renamed(exc: DriverError, command: str, prefix: str) -> DriverError:
    """``exc`` (about a helper query: ``TB?``, ``VE?``) told as a failure of ``command``, of
    the same kind and code, so a caller's handling of timeouts and replies still applies."""
    return type(exc)(exc.instrument_id, command, prefix + exc.message, exc.code)


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

    Software limits (``SL``, ``SR``) are the controller's to enforce: it refuses a move
    beyond them, raised as a DriverError (``x06``/``x07``: code 106 on axis 1), or runs it
    when its ``ZS`` (software limit configuration) switches the check off. The driver does
    not check moves against them itself: it would have to read them before each move and
    see the number as the controller does (``PA`` goes out with 9 decimals, ``ZS`` may
    switch the check off), and it would add no safety, only refusals of moves that run.

    Values: ``VA`` and ``AC`` must be positive (the controller refuses 0 and less with
    ``x01``, more than the axis' maxima ``VU``/``AU`` with ``x10``/``x11``: those depend on
    the stage, so the controller judges them); every number goes out as a plain decimal of
    at most 1e12 in magnitude (:func:`~.esp300_protocol.plain`).
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
                         unit="units/s", kind=float, range=(NUMBER_STEP, NUMBER_MAX),
                         doc="velocity (the controller also refuses more than the axis' "
                             "VU)")
    acceleration = Parameter("{axis}AC?", "{axis}AC{}", parse=number, format=plain,
                             unit="units/s^2", kind=float, range=(NUMBER_STEP, NUMBER_MAX),
                             doc="acceleration (the controller also refuses more than the "
                                 "axis' AU)")
    left_limit = Parameter("{axis}SL?", "{axis}SL{}", parse=number, format=plain, kind=float,
                           range=NUMBERS, doc="left software travel limit")
    right_limit = Parameter("{axis}SR?", "{axis}SR{}", parse=number, format=plain, kind=float,
                            range=NUMBERS, doc="right software travel limit")
    firmware = Parameter("VE?", parse=str, setting=False, doc="controller firmware (VE?)")
    stage = Parameter("{axis}ID?", parse=str, setting=False, doc="stage model and serial")
    define_position = Command("{axis}DH{}", "position", format=plain, kind=float, range=NUMBERS,
                              doc="call the current position `position` (0: zero here)")
    jog = Command("{axis}MV{}", "direction", choices=DIRECTIONS,
                  doc="move indefinitely until stop")
    move_to_limit = Command("{axis}MT{}", "direction", choices=DIRECTIONS,
                            doc="move to the hardware travel limit")
    motor_on = Command("{axis}MO", doc="power the motor")
    motor_off = Command("{axis}MF", doc="switch the motor off")
    #: ST and AB take the port's urgent lane and skip the FIFO drain (write_fn)
    stop = Command("{axis}ST", urgent=True, doc="decelerate this axis to a stop")
    abort = Command("AB", urgent=True, doc="abort the motion of every axis of the controller")

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        if self.options.limits is not None:
            try:
                ordered_limits(*self.options.limits)
            except ValueError as exc:
                raise ValueError(f"{self.id}: ESP300 {exc}") from None
        self.axis: int = self.options.axis
        self.fields = {"axis": self.axis}
        self.identity = {"model": "ESP300", "axis": self.axis}
        self.router: ErrorRouter = self.resource.shared(ErrorRouter.KEY, ErrorRouter)
        self._lock = threading.Lock()
        self._faults: list[EspError] = []
        self._motion_command = ""
        self._was_moving = True  # the first poll reads the FIFO

    def execute(self, io: Any, tx: Transaction[Any]) -> Any:
        """Declared commands go through the axis' exchanges (error FIFO drained after each);
        one that starts a motion forgets earlier faults, so later ones are its own."""
        if tx.fn is not None:
            return tx.fn(io)
        if tx.urgent:
            return self.write_fn(tx.command)(io)
        if tx.parse is None and mnemonic_of(tx.command) in MOTIONS:
            self.motion_fn(tx.command)(io)
            return None
        if tx.parse is None:
            self.set_fn(tx.command)(io)
            return None
        parse = tx.parse
        return self.query_fn(
            tx.command, lambda text: parse_reply(parse, text, self.id, tx.command))(io)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Transaction[None]:
        return Transaction("connect", fn=self.connect_fn())

    def poll(self) -> Plan[dict[str, Sample]]:
        position, meta = yield Transaction("poll", fn=self.poll_fn())
        return {"position": Sample(position, meta)}

    def close(self) -> Plan[None]:
        """Stop this axis: nothing should keep moving once nobody watches it."""
        try:
            yield type(self).stop.transaction(self)
        except DriverError as exc:
            log.warning("%s: could not stop axis %d on close: %s", self.id, self.axis, exc)

    # ------------------------------------------------------------------ Motion
    @command(position=POSITION)
    def move_absolute(self, position: float) -> Transaction[None]:
        """Start a move to ``position`` (axis units; ``wait_until_done`` waits): sends
        ``{axis}PA{}``; the controller judges it against its software limits."""
        cmd = self.cmd("PA", self.arg_text(position, "PA"))
        return Transaction(cmd, fn=self.motion_fn(cmd))

    @command(distance=POSITION)
    def move_relative(self, distance: float) -> Transaction[None]:
        """Start a move by ``distance`` (axis units): sends ``{axis}PR{}``; the controller
        judges it against its software limits."""
        cmd = self.cmd("PR", self.arg_text(distance, "PR"))
        return Transaction(cmd, fn=self.motion_fn(cmd))

    @command
    def home(self, timeout: float = 30.0) -> Plan[None]:
        """Search home (``OR``) and wait for it; on timeout stop the axis and raise."""
        checked_wait(self.id, timeout)
        yield self.write(self.home_command())
        if not (yield from self._wait(timeout)):
            yield type(self).stop.transaction(self)
            raise self.motion_timeout(timeout, homing=True)
        self.raise_faults()

    @command
    def is_moving(self) -> Plan[bool]:
        """``MD?``: whether the axis is still moving."""
        return not (yield self._done())

    @command
    def wait_until_done(self, timeout: float = 30.0) -> Plan[float]:
        """Wait until the axis stops; raise what went wrong during the motion; final position."""
        checked_wait(self.id, timeout)
        if not (yield from self._wait(timeout)):
            raise self.motion_timeout(timeout, homing=False)
        self.raise_faults()
        return (yield type(self).position.query(self))  # type: ignore[no-any-return]

    def _done(self) -> Transaction[bool]:
        md = self.cmd("MD?")
        return self.query(md, self.parse_done(md))

    def _wait(self, timeout: float) -> Plan[bool]:
        deadline = time.monotonic() + timeout
        while not (yield self._done()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            yield Pause(min(self.options.poll_interval, left))
        return True

    # ------------------------------------------------------------------ more of the ESP300
    @command(left=POSITION, right=POSITION, rule=ordered_limits)
    def set_limits(self, left: float, right: float) -> Plan[None]:
        """Software travel limits (``SL``, ``SR``) in the axis' units, left < right."""
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
        return Transaction(text, fn=self.set_fn(text, also=raw_axis(text)))

    @command
    def raw_query(self, text: str) -> Transaction[str]:
        """Send a query this driver does not wrap and return its reply line."""
        return Transaction(text, fn=self.query_fn(text, str, also=raw_axis(text)))

    def cmd(self, mnemonic: str, parameter: str = "") -> str:
        """``[axis]MN[parameter]``, the controller's command syntax."""
        return f"{self.axis}{mnemonic}{parameter}"

    def arg_text(self, value: float, mnemonic: str) -> str:
        """:func:`~.esp300_protocol.plain`, its refusal naming the instrument and command (a
        value that is no number at all too: ``math.isfinite`` raised a bare TypeError)."""
        try:
            return plain(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.id}: {self.cmd(mnemonic)} {exc}") from None

    # ------------------------------------------------------------------ the axis' exchanges
    # Methods named *_fn are transaction functions; they run on whichever thread holds the
    # port, so the fault list is guarded by a lock.
    def _own_errors(self, io: Any, also: int | None = None, after: str | None = None
                    ) -> list[EspError]:
        """The error FIFO's entries for this axis; a failure to read it ``after`` a command
        names that command (the user's call), saying it was sent, not ``TB?`` alone."""
        try:
            return self.router.split(self.axis, drain_errors(io, self.id), also=also)
        except DriverError as exc:
            if after is None:
                raise
            raise renamed(exc, after, "sent; checking the error FIFO (TB?) after it: ") from exc

    def _begin(self, io: Any, cmd: str) -> None:
        """:func:`begin`; a line it cannot bring back in step keeps ``cmd`` from being sent,
        and the error says so (naming only the marker query left the user guessing)."""
        try:
            begin(io, self.options.reply_timeout, self.id)
        except DriverError as exc:
            raise renamed(exc, cmd, "not sent: ") from exc

    def _add_faults(self, errors: list[EspError]) -> None:
        """Keep faults for the next wait; bounded, keeping the oldest (the first cause)."""
        if errors:
            with self._lock:
                self._faults = (self._faults + errors)[:FIFO_DEPTH]

    def _ask(self, io: Any, cmd: str, parse: Callable[[str], T], also: int | None) -> T:
        """Send a query and parse its reply; silence is explained from the error FIFO."""
        send(io, cmd, COMMAND_END)
        text = read_line(io, self.id, cmd, REPLY_END)
        if text is None:
            try:
                begin(io, io.timeout, self.id)  # in step: a late reply is no error entry
                own = self._own_errors(io, also)
            except DriverTimeoutError:
                raise no_reply(io, self.id, cmd) from None  # silent altogether
            if own:
                raise as_driver_error(self.id, cmd, own)
            raise no_reply(io, self.id, cmd)
        return parse(text)

    def _set(self, io: Any, cmd: str, also: int | None = None) -> None:
        send(io, cmd, COMMAND_END)
        own = self._own_errors(io, also, after=cmd)
        if own:
            raise as_driver_error(self.id, cmd, own)

    def parse_float(self, cmd: str) -> Callable[[str], float]:
        return lambda text: parse_reply(number, text, self.id, cmd)

    def parse_done(self, cmd: str) -> Callable[[str], bool]:
        """``MD?``: ``1`` = motion done, ``0`` = moving (the protocol reference)."""
        return lambda text: parse_reply(integer(0, 1), text, self.id, cmd) == 1

    # ------------------------------------------------------------------ transactions
    def connect_fn(self) -> Callable[[Any], None]:
        """Check the axis answers, agree on units, power the motor, apply the lab's settings."""
        s = self.options

        def connect(io: Any) -> None:
            begin(io, s.reply_timeout, self.id)
            stale = self._own_errors(io)
            resync_by(io, "VE?", self._ask(io, "VE?", str, None), COMMAND_END, REPLY_END)
            if stale:
                log.info("%s: discarded errors from before connect: %s", self.id, describe(stale))
            sn = self.cmd("SN?")
            code = self._ask(io, sn, lambda t: parse_reply(integer(0, 11), t, self.id, sn), None)
            reported = UNIT_NAMES[code]
            if reported != s.units:
                if not s.set_units:
                    raise DriverError(
                        self.id, sn,
                        f"axis {self.axis} works in {reported} (SN {code}) but the lab file "
                        f"declares units = {s.units!r}; declare units = {reported!r}, or set "
                        f"set_units = true to switch the axis to {s.units}", code="units")
                self._set(io, self.cmd("SN", str(UNIT_CODES[s.units])))
            if s.motor_on:
                self._set(io, self.cmd("MO"))
            if s.velocity is not None:
                self._set(io, self.cmd("VA", self.arg_text(s.velocity, "VA")))
            if s.acceleration is not None:
                self._set(io, self.cmd("AC", self.arg_text(s.acceleration, "AC")))
            if s.limits is not None:
                self._set(io, self.cmd("SL", self.arg_text(s.limits[0], "SL")))
                self._set(io, self.cmd("SR", self.arg_text(s.limits[1], "SR")))

        return connect

    def set_fn(self, cmd: str, *, also: int | None = None) -> Callable[[Any], None]:
        """A set command: errors it causes raise; faults routed to us meanwhile are kept."""

        def set_command(io: Any) -> None:
            self._begin(io, cmd)
            self._add_faults(self.router.take(self.axis))
            self._set(io, cmd, also)

        return set_command

    def motion_fn(self, cmd: str) -> Callable[[Any], None]:
        """Start a motion (PA, PR, OR, MV, MT): forget earlier faults, remember what we
        asked for."""

        def start_motion(io: Any) -> None:
            self._begin(io, cmd)
            with self._lock:
                old, self._faults = self._faults, []
                self._motion_command = cmd
            self._was_moving = True  # a short move may end before the next poll sees it
            old += self.router.take(self.axis)
            if old:
                log.warning("%s: faults of an earlier motion nobody waited for: %s", self.id,
                            describe(old))
            self._set(io, cmd)

        return start_motion

    def query_fn(self, cmd: str, parse: Callable[[str], T], *, also: int | None = None
                 ) -> Callable[[Any], T]:
        def query(io: Any) -> T:
            self._begin(io, cmd)
            value = self._ask(io, cmd, parse, also)
            self._add_faults(self._own_errors(io, also, after=cmd) + self.router.take(self.axis))
            return value

        return query

    def write_fn(self, cmd: str) -> Callable[[Any], None]:
        """Write only, no FIFO drain: for ST/AB, which must be on the wire as fast as possible.

        Whatever they cause (``x20 HOMING ABORTED``) is drained by the next exchange and
        becomes a fault of the motion they interrupted.
        """

        def write(io: Any) -> None:
            send(io, cmd, COMMAND_END)

        return write

    def poll_fn(self) -> Callable[[Any], tuple[float, dict[str, MetaValue]]]:
        """One sample: actual position, whether the axis moves, faults seen since last time
        (the FIFO read only when one can be waiting: see the module docstring)."""
        tp, md = self.cmd("TP?"), self.cmd("MD?")

        def poll(io: Any) -> tuple[float, dict[str, MetaValue]]:
            self._begin(io, tp)
            position = self._ask(io, tp, self.parse_float(tp), None)
            done = self._ask(io, md, self.parse_done(md), None)
            drain = (self._was_moving or not done
                     or time.monotonic() - self.router.drained_at >= IDLE_ERROR_CHECK_S)
            self._was_moving = not done
            new = (self._own_errors(io) if drain else []) + self.router.take(self.axis)
            self._add_faults(new)
            meta: dict[str, MetaValue] = {"moving": not done}
            if new:
                meta["error_code"] = new[0].code
                meta["error"] = describe(new)
            return position, meta

        return poll

    # ------------------------------------------------------------------ after a motion
    def raise_faults(self) -> None:
        """Raise (once) the faults of the motion just finished, naming its command."""
        with self._lock:
            faults, self._faults = self._faults, []
            cmd = self._motion_command
        if faults:
            raise as_driver_error(self.id, cmd or self.cmd("MD?"), faults)

    def motion_timeout(self, waited: float, homing: bool) -> DriverTimeoutError:
        with self._lock:
            cmd = self._motion_command or self.cmd("MD?")
        what = "homing" if homing else "the motion"
        after = "; the axis was stopped (ST)" if homing else ""
        return DriverTimeoutError(
            self.id, cmd,
            f"axis {self.axis}: {what} did not finish within {waited:.3g} s (MD? still "
            f"reported moving){after}", code="timeout")

    def home_command(self) -> str:
        mode = self.options.home_mode
        return self.cmd("OR", "" if mode is None else str(mode))
