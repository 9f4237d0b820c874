"""Simulated Newport ESP300 three-axis motion controller, written from the protocol reference.

The device is a pure state machine: motion is a function of the clock, and commands that must
wait (``WS``, ``WT``) stay in a queue until the clock reaches their due time. Nothing sleeps and
nothing runs in a thread, so a test on a :class:`~daqhub_sims.device.ManualClock` sees exact
trapezoids.

Model choices where the reference leaves room (a driver must not depend on them):

- A line longer than 80 characters (terminator excluded) is dropped whole and logs error 6
  COMMAND DOES NOT EXIST: a controller that truncated the line cannot trust any command in it,
  and 6 is the general "could not make sense of it" code in the list (2 is about time-outs,
  7 about numbers).
- The error FIFO keeps the 10 most recent errors: an 11th error pushes the oldest one out.
- Numbers: a missing number logs 38, a token that is not a number logs 7, a number outside an
  axis parameter's range logs ``x01``, a speed above ``VU`` logs ``x10``, an acceleration above
  ``AU`` logs ``x11``. ``?`` after a set-only command is "not a number" (7).
- Error 9 is printed as AXIS NUMBER OUT OF RANGE (the manual's ``TB?`` example prints AXIS
  NUMBER NOT AVAILABLE for the same code).
- Positions are kept in encoder counts; the default resolution (``SU?``) is 0.0001 default
  unit per count. ``SN`` changes only the numbers a driver sees: linear and angular units share
  one scale (1 mm == 1 deg) because the simulated stage has no mechanical type. Motor steps
  (unit 1) are counted like encoder counts.
- The servo is perfect: ``TP?`` equals ``DP?`` (the profile's instantaneous set point).
- A new ``PA``/``PR``/``MV`` during motion replans from the current position and velocity;
  ``PR`` is relative to the running move's target (or to the position when not moving to one).
  ``VA``/``AC``/``AG`` apply to the next motion command, not to a motion in progress.
- ``ST`` without an axis stops every axis; ``WS`` without an axis waits for every axis.
- ``AB`` stops every axis at once (no deceleration); motors stay on.
- ``ST``, ``AB`` or ``MF`` during a home search log ``x20`` HOMING ABORTED; the axis stays unhomed.
- A jog (``MV+``/``MV-``) runs at ``VA`` to the software limit, stops there and logs
  ``x06``/``x07``.
- The stage has a home switch at option ``home`` (default units, relative to the power-on
  position, default 0) and hardware limits ``travel/2`` on either side of it (option ``travel``,
  default 50). ``OR`` targets: mode 0 the position 0, modes 1-2 the home switch, modes 3/5 the
  positive and 4/6 the negative hardware limit; index pulses coincide with the switch or limit.
  The search runs at ``OH`` with ``AC``/``AG`` and ignores software limits; ``OM`` (default 1)
  is the mode used by a bare ``OR``. A move whose target lies past a hardware limit stops at the
  limit and logs ``x04``/``x05``.
- Software limits default to the hardware limits at power-on (``SL`` -25, ``SR`` +25).
- ``DH`` is refused with 27 COMMAND NOT ALLOWED while the axis moves (``x30`` while homing).
- Motors are off at power-on, as on the real controller.
- Number replies use up to 10 significant digits with trailing zeros removed (``5.32``, ``0``).

Commands independent clients send that the protocol reference does not detail (``MT``,
``WP``, ``ZU``, ``TS``, ``TX``, ``PH``, ``KP``/``KI``/``KD``/``KS``, ``ZH``, ``ZB``, ``QM``,
``TJ``, ``SA``, ``DH?``) follow the manual's command reference; where that leaves room the
choice made is:

- ``xxMT+``/``xxMT-`` runs at ``VA`` to the hardware limit, ignoring software limits (it seeks
  the switch), and logs nothing on arrival (reaching the switch is what was asked);
  ``xxMT?`` answers ``0`` while the axis moves, ``1`` at rest. No argument logs 38, any other
  argument 7; motor off ``x13``; during a home search ``x30``.
- ``xxWPnn`` holds later commands until the axis reaches or crosses ``nn``. If the axis is at
  rest, or its motion ends short of ``nn``, the wait ends when it is at rest (the real
  controller would wait for ever; a simulator that hangs proves nothing).
- ``TS`` answers one ASCII character: bit 6 always set, bits 0-2 axis 1-3 in motion, bit 4 at
  least one motor on (the manual's example ``[P`` carries a second character only on
  controllers with more than four axes). ``TX`` answers the same way with bits 0-3 program
  running, waiting (``WS``/``WT``/``WP``), manual jog, local mode: all clear whenever a ``TX``
  can execute, since it runs after any wait before it.
- ``PH`` answers two registers in hex, ``18000404H, 4H`` style. First: bits 0-2 axis 1-3 at
  the positive hardware limit, bits 3-5 at the negative one [U], bits 8-10 index signal (at
  the home switch), bits 16-17 digital inputs A/B (low). Second: bits 0-2 home signal high
  (the axis is on the positive side of its home switch) [U].
- ``ZU`` answers the ESP system configuration in hex: bit n-1 set for each axis n with an
  ESP-compatible stage (every simulated axis) [U]. ``ZB`` (feedback) and ``ZH`` (hardware
  limit configuration) are stored per axis, take ``nnH`` hex or a decimal number, answer
  ``?`` in hex, and do not change the motion model.
- ``KP``/``KI``/``KD`` (0 to 2**31) and ``KS`` (0 to 1) are stored and answered; the perfect
  servo ignores them. Out of range logs ``x01``.
- ``QM`` (motor type 0-4, power-on 1 DC servo) and ``TJ`` (trajectory mode 1-6, power-on 1
  trapezoidal; 2 S-curve is run as a trapezoid) refuse a change while the axis moves with 27.
  ``MO`` with motor type 0 logs ``x00`` MOTOR TYPE NOT DEFINED; ``PA``/``PR``/``MT`` in modes
  3-6 log ``x32`` and ``OR`` ``x27`` (invalid trajectory mode for moving / homing).
- ``SAnn`` sets the controller's device address (1-31, power-on 1); ``SA?`` answers it.
  Out of range logs 7.
- ``xxDH?`` answers the position value last defined with ``DH`` (0 at power-on).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from daqhub_sims.device import Clock, SimDevice
from daqhub_sims.model_options import SimOption, with_defaults

#: Seconds per servo tick; ``TB?`` timestamps count these since power-on.
SERVO_TICK = 400e-6
#: Longest accepted command line, terminator excluded.
MAX_LINE_LENGTH = 80
#: Depth of the error FIFO.
ERROR_FIFO_DEPTH = 10
#: Encoder counts per default unit (resolution 0.0001).
COUNTS_PER_UNIT = 10_000.0
#: Reply of ``VE?`` and ``*IDN?`` (format seen in a hardware log; the exact text is unconfirmed).
VERSION = "ESP300 Version 3.04 07/27/01"

GENERAL_ERRORS: dict[int, str] = {
    0: "NO ERROR DETECTED",
    1: "PCI COMMUNICATION TIME-OUT",
    2: "RS-232 COMMUNICATION TIME-OUT",
    4: "EMERGENCY STOP ACTIVATED",
    6: "COMMAND DOES NOT EXIST",
    7: "PARAMETER OUT OF RANGE",
    8: "CABLE INTERLOCK ERROR",
    9: "AXIS NUMBER OUT OF RANGE",
    13: "GROUP NUMBER MISSING",
    14: "GROUP NUMBER OUT OF RANGE",
    15: "GROUP NUMBER NOT ASSIGNED",
    16: "GROUP NUMBER ALREADY ASSIGNED",
    17: "GROUP AXIS OUT OF RANGE",
    18: "GROUP AXIS ALREADY ASSIGNED",
    19: "GROUP AXIS DUPLICATED",
    20: "DATA ACQUISITION IS BUSY",
    21: "DATA ACQUISITION SETUP ERROR",
    22: "DATA ACQUISITION NOT ENABLED",
    23: "SERVO CYCLE TICK FAILURE",
    25: "DOWNLOAD IN PROGRESS",
    26: "STORED PROGRAM NOT STARTED",
    27: "COMMAND NOT ALLOWED",
    28: "STORED PROGRAM FLASH AREA FULL",
    29: "GROUP PARAMETER MISSING",
    30: "GROUP PARAMETER OUT OF RANGE",
    31: "GROUP MAXIMUM VELOCITY EXCEEDED",
    32: "GROUP MAXIMUM ACCELERATION EXCEEDED",
    33: "GROUP MAXIMUM DECELERATION EXCEEDED",
    34: "GROUP MOVE NOT ALLOWED DURING MOTION",
    35: "PROGRAM NOT FOUND",
    37: "AXIS NUMBER MISSING",
    38: "COMMAND PARAMETER MISSING",
    39: "PROGRAM LABEL NOT FOUND",
    40: "LAST COMMAND CANNOT BE REPEATED",
    41: "MAX NUMBER OF LABELS PER PROGRAM EXCEEDED",
}

#: Axis errors by their last two digits; the code logged is ``100 * axis + key``.
AXIS_ERRORS: dict[int, str] = {
    0: "MOTOR TYPE NOT DEFINED",
    1: "PARAMETER OUT OF RANGE",
    2: "AMPLIFIER FAULT DETECTED",
    3: "FOLLOWING ERROR THRESHOLD EXCEEDED",
    4: "POSITIVE HARDWARE LIMIT DETECTED",
    5: "NEGATIVE HARDWARE LIMIT DETECTED",
    6: "POSITIVE SOFTWARE LIMIT DETECTED",
    7: "NEGATIVE SOFTWARE LIMIT DETECTED",
    8: "MOTOR / STAGE NOT CONNECTED",
    9: "FEEDBACK SIGNAL FAULT DETECTED",
    10: "MAXIMUM VELOCITY EXCEEDED",
    11: "MAXIMUM ACCELERATION EXCEEDED",
    13: "MOTOR NOT ENABLED",
    15: "MAXIMUM JERK EXCEEDED",
    16: "MAXIMUM DAC OFFSET EXCEEDED",
    17: "CRITICAL SETTINGS ARE PROTECTED",
    18: "STAGE DEVICE ERROR",
    19: "STAGE DATA INVALID",
    20: "HOMING ABORTED",
    21: "MOTOR CURRENT NOT DEFINED",
    22: "UNIDRIVE COMMUNICATIONS ERROR",
    23: "UNIDRIVE NOT DETECTED",
    24: "SPEED OUT OF RANGE",
    25: "INVALID TRAJECTORY MASTER AXIS",
    26: "PARAMETER CHARGE NOT ALLOWED",
    27: "INVALID TRAJECTORY MODE FOR HOMING",
    28: "INVALID ENCODER STEP RATIO",
    29: "DIGITAL I/O INTERLOCK DETECTED",
    30: "COMMAND NOT ALLOWED DURING HOMING",
    31: "COMMAND NOT ALLOWED DUE TO GROUP ASSIGNMENT",
    32: "INVALID TRAJECTORY MODE FOR MOVING",
}

# Axis error numbers used by the simulator (last two digits).
E_PARAMETER = 1
E_HW_LIMIT_POS = 4
E_HW_LIMIT_NEG = 5
E_SW_LIMIT_POS = 6
E_SW_LIMIT_NEG = 7
E_MOTOR_TYPE = 0
E_MAX_VELOCITY = 10
E_MAX_ACCELERATION = 11
E_MOTOR_OFF = 13
E_HOMING_ABORTED = 20
E_DURING_HOMING = 30
E_TRAJECTORY_HOMING = 27
E_TRAJECTORY_MOVING = 32

# General error numbers used by the simulator.
E_NO_COMMAND = 6
E_BAD_NUMBER = 7
E_NO_AXIS = 9
E_NOT_ALLOWED = 27
E_AXIS_MISSING = 37
E_PARAMETER_MISSING = 38


def error_message(code: int) -> str:
    """Upper-case ``TB?`` text of an error code (general 0-99 or axis ``100*axis + n``)."""
    if code < 100:
        return GENERAL_ERRORS.get(code, "UNKNOWN ERROR")
    return AXIS_ERRORS.get(code % 100, "UNKNOWN ERROR")


#: How many of each unit make one millimetre (linear) or one degree (angular).
UNITS_PER_BASE: dict[int, float] = {
    2: 1.0,
    3: 1e3,
    4: 1.0 / 25.4,
    5: 1e3 / 25.4,
    6: 1e6 / 25.4,
    7: 1.0,
    8: 400.0 / 360.0,
    9: math.pi / 180.0,
    10: 1e3 * math.pi / 180.0,
    11: 1e6 * math.pi / 180.0,
}

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)(E[+-]?\d+)?")
_COMMAND = re.compile(r"(\d+)?(\*IDN|[A-Z]{2})(.*)")
#: Commands that reply whether or not a ``?`` follows (pymeasure sends ``1TP``).
_ALWAYS_QUERIES = frozenset(
    {"TP", "DP", "MD", "TE", "TB", "VE", "ID", "*IDN", "TS", "TX", "PH", "ZU"}
)
#: Unit-free axis settings: power-on value and accepted range (``x01`` outside it).
_SETTINGS: dict[str, tuple[float, float, float]] = {
    "KP": (1.0, 0.0, 2.0**31),
    "KI": (0.0, 0.0, 2.0**31),
    "KD": (0.0, 0.0, 2.0**31),
    "KS": (1.0, 0.0, 1.0),
    "QM": (1, 0, 4),
    "TJ": (1, 1, 6),
    "ZB": (0x5, 0, 0xFFFF),
    "ZH": (0x5, 0, 0xFFFF),
}
#: Settings that take whole numbers, and those written in hex (``1ZB3H``, reply ``3H``).
_INTEGER_SETTINGS = frozenset({"QM", "TJ", "ZB", "ZH"})
_HEX_SETTINGS = frozenset({"ZB", "ZH"})
#: Settings a moving axis refuses to change (27 COMMAND NOT ALLOWED).
_SETTINGS_FIXED_IN_MOTION = frozenset({"QM", "TJ"})
#: Trajectory modes (``TJ``) in which point-to-point moves are possible.
_MOVE_MODES = frozenset({1, 2})

# Validation class of each stored axis parameter.
_VELOCITY = "velocity"  # > 0 and <= VU
_ACCELERATION = "acceleration"  # > 0 and <= AU
_POSITIVE = "positive"
_NON_NEGATIVE = "non-negative"
_ANY = "any"
_PARAMETER_RULES: dict[str, str] = {
    "VA": _VELOCITY,
    "VU": _POSITIVE,
    "AC": _ACCELERATION,
    "AG": _ACCELERATION,
    "AU": _POSITIVE,
    "AE": _POSITIVE,
    "JK": _POSITIVE,
    "VB": _NON_NEGATIVE,
    "JH": _VELOCITY,
    "JW": _VELOCITY,
    "OH": _VELOCITY,
    "FE": _NON_NEGATIVE,
    "BA": _NON_NEGATIVE,
    "SL": _ANY,
    "SR": _ANY,
    "SH": _ANY,
}
#: Power-on values in default units (per second, per second squared ...), before speed_scale.
_DEFAULTS: dict[str, float] = {
    "VA": 10.0,
    "VU": 20.0,
    "AC": 40.0,
    "AG": 40.0,
    "AU": 200.0,
    "AE": 400.0,
    "JK": 4000.0,
    "VB": 0.0,
    "JH": 10.0,
    "JW": 1.0,
    "OH": 2.0,
    "FE": 1.0,
    "BA": 0.0,
    "SH": 0.0,
}
#: Power of the time unit in each parameter, so ``speed_scale`` shortens every motion alike.
_TIME_POWER: dict[str, int] = {
    "VA": 1, "VU": 1, "VB": 1, "JH": 1, "JW": 1, "OH": 1,
    "AC": 2, "AG": 2, "AU": 2, "AE": 2,
    "JK": 3,
}


def format_number(value: float) -> str:
    """Reply text of a float: short, no trailing zeros, never ``-0``."""
    text = f"{value:.10g}"
    return "0" if text in ("-0", "0") else text


# ---------------------------------------------------------------------------------------------
# Motion profiles


@dataclass(frozen=True)
class Segment:
    """A stretch of constant acceleration; all quantities in counts and seconds."""

    start: float
    duration: float
    position: float
    velocity: float
    acceleration: float

    @property
    def end(self) -> float:
        return self.start + self.duration

    def position_at(self, t: float) -> float:
        dt = min(max(t - self.start, 0.0), self.duration)
        return self.position + self.velocity * dt + 0.5 * self.acceleration * dt * dt

    def velocity_at(self, t: float) -> float:
        dt = min(max(t - self.start, 0.0), self.duration)
        return self.velocity + self.acceleration * dt


@dataclass(frozen=True)
class Trajectory:
    """A planned motion from ``start`` that ends at rest on ``final`` at ``end``."""

    start: float
    segments: tuple[Segment, ...]
    final: float

    @property
    def end(self) -> float:
        return self.segments[-1].end if self.segments else self.start

    def position_at(self, t: float) -> float:
        if t >= self.end:
            return self.final
        for segment in self.segments:
            if t < segment.end:
                return segment.position_at(t)
        return self.final

    def velocity_at(self, t: float) -> float:
        if t >= self.end:
            return 0.0
        for segment in self.segments:
            if t < segment.end:
                return segment.velocity_at(t)
        return 0.0


def reach_time(trajectory: Trajectory, t: float, target: float) -> float | None:
    """First time from ``t`` at which ``trajectory`` is on or past ``target`` (None: never).

    Within one segment the velocity keeps its sign, so the position there is monotonic and
    the crossing is a root of the segment's quadratic.
    """
    for seg in trajectory.segments:
        if seg.end < t:
            continue
        t0 = max(t, seg.start)
        p0, p1 = seg.position_at(t0), seg.position_at(seg.end)
        if min(p0, p1) - 0.5 <= target <= max(p0, p1) + 0.5:
            if abs(target - p0) <= 0.5:
                return t0
            a, v, d = seg.acceleration, seg.velocity_at(t0), target - p0
            if a == 0.0:
                return t0 + d / v
            disc = max(v * v + 2.0 * a * d, 0.0)
            roots = [(-v + sign * math.sqrt(disc)) / a for sign in (1.0, -1.0)]
            return t0 + min(r for r in roots if r >= -1e-12)
    return None


def _segment(t: float, duration: float, p: float, v: float, a: float) -> Segment:
    return Segment(t, max(duration, 0.0), p, v, a)


def plan_move(
    t: float, p: float, v: float, target: float, vmax: float, accel: float, decel: float
) -> Trajectory:
    """Trapezoidal (or triangular) profile from position ``p`` and velocity ``v`` to ``target``.

    A motion already running the wrong way, too fast, or too close to stop in time first
    decelerates, so a new target during motion behaves like the controller's on-the-fly update.
    """
    segments: list[Segment] = []
    if v != 0.0:
        s = math.copysign(1.0, v)
        stop_distance = v * v / (2.0 * decel)
        if s * (target - p) < stop_distance:
            seg = _segment(t, abs(v) / decel, p, v, -s * decel)
            segments.append(seg)
            t, p, v = seg.end, seg.position_at(seg.end), 0.0
        elif abs(v) > vmax:
            seg = _segment(t, (abs(v) - vmax) / decel, p, v, -s * decel)
            segments.append(seg)
            t, p, v = seg.end, seg.position_at(seg.end), s * vmax
    distance = abs(target - p)
    if distance == 0.0 and v == 0.0:
        return Trajectory(segments[0].start if segments else t, tuple(segments), target)
    s = math.copysign(1.0, target - p) if v == 0.0 else math.copysign(1.0, v)
    u = abs(v)
    # Peak speed of a triangle that starts at speed u and ends at rest exactly on target.
    peak = math.sqrt((distance + u * u / (2.0 * accel)) / (0.5 / accel + 0.5 / decel))
    peak = max(min(peak, vmax), u)
    accel_time = (peak - u) / accel
    accel_distance = (peak * peak - u * u) / (2.0 * accel)
    decel_time = peak / decel
    decel_distance = peak * peak / (2.0 * decel)
    cruise_distance = max(distance - accel_distance - decel_distance, 0.0)
    cruise_time = cruise_distance / peak if peak > 0.0 else 0.0
    for duration, a in ((accel_time, s * accel), (cruise_time, 0.0), (decel_time, -s * decel)):
        if duration > 0.0:
            seg = _segment(t, duration, p, v, a)
            segments.append(seg)
            t, p, v = seg.end, seg.position_at(seg.end), seg.velocity_at(seg.end)
    start = segments[0].start if segments else t
    return Trajectory(start, tuple(segments), target)


def plan_stop(t: float, p: float, v: float, decel: float) -> Trajectory:
    """Deceleration to rest, as ``ST`` does."""
    if v == 0.0:
        return Trajectory(t, (), p)
    seg = _segment(t, abs(v) / decel, p, v, -math.copysign(decel, v))
    return Trajectory(t, (seg,), seg.position_at(seg.end))


# ---------------------------------------------------------------------------------------------
# Axis and command state

IDLE = "idle"
MOVING = "moving"
JOGGING = "jogging"
HOMING = "homing"
STOPPING = "stopping"


@dataclass
class Axis:
    """One motor channel. Lengths are encoder counts in the user's coordinates."""

    number: int
    units: int
    base_per_count: float  # millimetres (or degrees) per count, i.e. the SU resolution
    home_switch: float  # physical counts
    half_travel: float  # counts from the home switch to either hardware limit
    parameters: dict[str, float]
    home_mode: int = 1
    settings: dict[str, float] = field(default_factory=lambda: {
        name: spec[0] for name, spec in _SETTINGS.items()})
    defined_home: float = 0.0  # last ``DH`` value, in the units it was given in
    motor_on: bool = False
    homed: bool = False
    offset: float = 0.0  # user coordinate = physical + offset
    position: float = 0.0  # valid while no trajectory runs
    trajectory: Trajectory | None = None
    state: str = IDLE
    arrival_error: int | None = None
    stopped_at: float = 0.0  # when the axis last came to rest, for WS

    def units_per_count(self) -> float:
        if self.units in UNITS_PER_BASE:
            return self.base_per_count * UNITS_PER_BASE[self.units]
        return 1.0

    def to_units(self, counts: float) -> float:
        return counts * self.units_per_count()

    def to_counts(self, value: float) -> float:
        return value / self.units_per_count()

    def position_at(self, t: float) -> float:
        return self.trajectory.position_at(t) if self.trajectory else self.position

    def velocity_at(self, t: float) -> float:
        return self.trajectory.velocity_at(t) if self.trajectory else 0.0

    def hardware_limits(self) -> tuple[float, float]:
        centre = self.home_switch + self.offset
        return centre - self.half_travel, centre + self.half_travel

    def error(self, number: int) -> int:
        return 100 * self.number + number


@dataclass(frozen=True)
class Command:
    """One ``;``-separated command, parsed when its line ends, executed when its turn comes."""

    received: float
    axis: int | None = None
    mnemonic: str = ""
    argument: str = ""
    error: int = 0  # a parse error to log instead of executing

    @property
    def replies(self) -> bool:
        return not self.error and (self.mnemonic in _ALWAYS_QUERIES or self.argument == "?")


@dataclass
class _ErrorEntry:
    code: int
    ticks: int


@dataclass
class _Options:
    axes: int
    units: int
    speed_scale: float
    home: float
    travel: float


OPTIONS = (
    SimOption("axes", "3", "number of axes, 1-3"),
    SimOption("units", "2", "power-on SN units of every axis (0 encoder counts ... 2 mm ... "
              "7 deg ... 11 urad)"),
    SimOption("speed_scale", "1", "multiplies every power-on speed, so motions take 1/scale "
              "of the time"),
    SimOption("home", "0", "home switch position, default units from the power-on position"),
    SimOption("travel", "50", "distance between the hardware limits, default units"),
)


def _parse_options(given: Mapping[str, str]) -> _Options:
    options = with_defaults(OPTIONS, given)

    def number(name: str) -> float:
        text = options[name]
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"ESP300 option {name}={text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"ESP300 option {name}={text!r} must be finite")
        return value

    def integer(name: str, low: int, high: int) -> int:
        text = options[name]
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise ValueError(f"ESP300 option {name}={text!r}: expected an integer {low}..{high}")
        return int(text)

    parsed = _Options(
        axes=integer("axes", 1, 3),
        units=integer("units", 0, 11),
        speed_scale=number("speed_scale"),
        home=number("home"),
        travel=number("travel"),
    )
    if parsed.speed_scale <= 0:
        raise ValueError(f"ESP300 option speed_scale={parsed.speed_scale} must be > 0")
    if parsed.travel <= 0:
        raise ValueError(f"ESP300 option travel={parsed.travel} must be > 0")
    return parsed


# ---------------------------------------------------------------------------------------------
# The device


class ESP300(SimDevice):
    """Newport ESP300 on RS-232.

    Options: :data:`OPTIONS` (any other is refused; a ``sim://`` URL's line options never
    reach the device).
    """

    baudrate = 19200
    summary = "Newport ESP300 three-axis motion controller (RS-232, 19200 baud)"
    OPTIONS = OPTIONS

    def __init__(
        self, options: Mapping[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__(options, clock)
        self._config = _parse_options(self.options)
        self._rx = bytearray()
        self._rx_too_long = False
        self._out = bytearray()
        self._handlers: dict[str, Callable[[Command, float], str | None]] = {
            "TP": self._position,
            "DP": self._position,
            "PA": self._move_absolute,
            "PR": self._move_relative,
            "MD": self._motion_done,
            "MV": self._jog,
            "ST": self._stop,
            "AB": self._abort,
            "OR": self._home,
            "OM": self._home_mode,
            "DH": self._define_home,
            "MO": self._motor_on,
            "MF": self._motor_off,
            "SN": self._units,
            "SU": self._resolution,
            "ID": self._identify_stage,
            "TE": self._error_code,
            "TB": self._error_message,
            "VE": self._version,
            "*IDN": self._version,
            "WS": self._wait,
            "WT": self._wait,
            "SM": self._nothing,
            "RS": self._reset,
            "MT": self._travel_limit,
            "WP": self._wait,
            "TS": self._controller_status,
            "TX": self._controller_activity,
            "PH": self._hardware_status,
            "ZU": self._system_configuration,
            "SA": self._device_address,
        }
        for mnemonic in _PARAMETER_RULES:
            self._handlers[mnemonic] = self._parameter
        for mnemonic in _SETTINGS:
            self._handlers[mnemonic] = self._setting
        self._power_on(self.clock.now())

    # -- SimDevice ------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        now = self.clock.now()
        self._advance(now)
        for byte in data:
            if byte == 0x0A:
                continue
            if byte == 0x0D:
                self._end_of_line(now)
            elif len(self._rx) < MAX_LINE_LENGTH:
                self._rx.append(byte)
            else:
                self._rx_too_long = True
        self._advance(now)

    def read(self) -> bytes:
        self._advance(self.clock.now())
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_output_in(self) -> float | None:
        now = self.clock.now()
        self._advance(now)
        if self._out:
            return 0.0
        if any(command.replies for command in self._queue):
            return max(self._due(self._queue[0]) - now, 0.0)
        return None

    # -- introspection for tests and demos ----------------------------------------------------

    def axis(self, number: int) -> Axis:
        """The live state of axis ``number`` (1-based); read-only use, for assertions."""
        return self._axes[number - 1]

    # -- time and queue ----------------------------------------------------------------------

    def _power_on(self, t: float) -> None:
        self._t0 = t
        self._stream_time = t
        self._errors: deque[_ErrorEntry] = deque(maxlen=ERROR_FIFO_DEPTH)
        self._queue: deque[Command] = deque()
        self._axes = [self._new_axis(n) for n in range(1, self._config.axes + 1)]
        self._device_address_value = 1

    def _new_axis(self, number: int) -> Axis:
        config = self._config
        base_per_count = 1.0 / COUNTS_PER_UNIT
        if config.units in UNITS_PER_BASE:
            base_per_count /= UNITS_PER_BASE[config.units]
        parameters: dict[str, float] = {}
        for name, value in _DEFAULTS.items():
            scale = config.speed_scale ** _TIME_POWER.get(name, 0)
            parameters[name] = value * COUNTS_PER_UNIT * scale
        half_travel = config.travel / 2.0 * COUNTS_PER_UNIT
        home_switch = config.home * COUNTS_PER_UNIT
        parameters["SL"] = home_switch - half_travel
        parameters["SR"] = home_switch + half_travel
        return Axis(
            number=number,
            units=config.units,
            base_per_count=base_per_count,
            home_switch=home_switch,
            half_travel=half_travel,
            parameters=parameters,
            stopped_at=self._t0,
        )

    def _end_of_line(self, now: float) -> None:
        line = self._rx.decode("latin-1")
        too_long = self._rx_too_long
        self._rx.clear()
        self._rx_too_long = False
        if too_long:
            self._queue.append(Command(received=now, error=E_NO_COMMAND))
            return
        for text in line.split(";"):
            compact = "".join(text.split()).upper()
            if compact:
                self._queue.append(self._parse(compact, now))

    @staticmethod
    def _parse(text: str, now: float) -> Command:
        match = _COMMAND.fullmatch(text)
        if match is None:
            return Command(received=now, error=E_NO_COMMAND)
        prefix, mnemonic, argument = match.groups()
        return Command(now, int(prefix) if prefix else None, mnemonic, argument)

    def _due(self, command: Command) -> float:
        ready = max(command.received, self._stream_time)
        if command.mnemonic == "WP" and not command.error:
            return self._position_reached(command, ready)
        if command.error or command.mnemonic not in ("WS", "WT"):
            return ready
        delay = _milliseconds(command.argument) / 1000.0
        if command.mnemonic == "WT":
            return ready + delay
        stop = ready
        for axis in self._waited_axes(command):
            end = axis.trajectory.end if axis.trajectory is not None else axis.stopped_at
            stop = max(stop, end)
        return stop + delay

    def _position_reached(self, command: Command, ready: float) -> float:
        """When ``WP`` lets the stream go on: the axis reaches ``nn``, or comes to rest."""
        axes = self._waited_axes(command) if command.axis is not None else []
        if not axes or _NUMBER.fullmatch(command.argument) is None:
            return ready  # its error is logged when it executes
        axis = axes[0]
        self._settle(ready)
        if axis.trajectory is None:
            return ready
        target = axis.to_counts(float(command.argument))
        reached = reach_time(axis.trajectory, ready, target)
        return max(ready, axis.trajectory.end if reached is None else reached)

    def _waited_axes(self, command: Command) -> list[Axis]:
        if command.axis is None:
            return list(self._axes)
        if 1 <= command.axis <= len(self._axes):
            return [self._axes[command.axis - 1]]
        return []

    def _advance(self, now: float) -> None:
        """Run every queued command and motion event that is due by ``now``, in time order."""
        while self._queue:
            command = self._queue[0]
            due = self._due(command)
            if due > now:
                break
            self._settle(due)
            self._queue.popleft()
            self._stream_time = due
            self._execute(command, due)
        self._settle(now)

    def _settle(self, t: float) -> None:
        while True:
            finished = [a for a in self._axes if a.trajectory is not None and a.trajectory.end <= t]
            if not finished:
                return
            self._finish(min(finished, key=lambda a: a.trajectory.end if a.trajectory else 0.0))

    def _finish(self, axis: Axis) -> None:
        trajectory = axis.trajectory
        assert trajectory is not None
        axis.position = trajectory.final
        axis.trajectory = None
        axis.stopped_at = trajectory.end
        if axis.state == HOMING:
            preset = axis.parameters["SH"]
            axis.offset += preset - axis.position
            axis.position = preset
            axis.homed = True
        if axis.arrival_error is not None:
            self._log(axis.arrival_error, trajectory.end)
            axis.arrival_error = None
        axis.state = IDLE

    def _log(self, code: int, t: float) -> None:
        self._errors.append(_ErrorEntry(code, self._ticks(t)))

    def _ticks(self, t: float) -> int:
        return int((t - self._t0) / SERVO_TICK + 1e-6)

    def _execute(self, command: Command, t: float) -> None:
        if command.error:
            self._log(command.error, t)
            return
        handler = self._handlers.get(command.mnemonic)
        if handler is None:
            self._log(E_NO_COMMAND, t)
            return
        reply = handler(command, t)
        if reply is not None:
            self._out += reply.encode("ascii") + b"\r\n"

    # -- argument helpers ----------------------------------------------------------------

    def _axis_of(self, command: Command, t: float) -> Axis | None:
        if command.axis is None:
            self._log(E_AXIS_MISSING, t)
            return None
        if not 1 <= command.axis <= len(self._axes):
            self._log(E_NO_AXIS, t)
            return None
        return self._axes[command.axis - 1]

    def _number(self, command: Command, t: float) -> float | None:
        token = command.argument.split(",")[0]
        if token == "":
            self._log(E_PARAMETER_MISSING, t)
            return None
        if _NUMBER.fullmatch(token) is None:
            self._log(E_BAD_NUMBER, t)
            return None
        return float(token)

    def _integer(self, command: Command, t: float, axis: Axis, low: int, high: int) -> int | None:
        value = self._number(command, t)
        if value is None:
            return None
        if value != int(value) or not low <= value <= high:
            self._log(axis.error(E_PARAMETER), t)
            return None
        return int(value)

    def _can_move(self, axis: Axis, t: float) -> bool:
        if axis.state == HOMING:
            self._log(axis.error(E_DURING_HOMING), t)
            return False
        if not axis.motor_on:
            self._log(axis.error(E_MOTOR_OFF), t)
            return False
        return True

    def _start(
        self, axis: Axis, t: float, target: float, state: str, speed: float,
        arrival_error: int | None = None,
    ) -> None:
        trajectory = plan_move(
            t, axis.position_at(t), axis.velocity_at(t), target, speed,
            axis.parameters["AC"], axis.parameters["AG"],
        )
        axis.position = axis.position_at(t)
        axis.trajectory = trajectory
        axis.state = state
        axis.arrival_error = arrival_error
        if trajectory.end <= t:
            self._finish(axis)

    def _halt(self, axis: Axis, t: float) -> None:
        """Stop ``axis`` where it is now (abort, motor off)."""
        if axis.state == HOMING:
            self._log(axis.error(E_HOMING_ABORTED), t)
        axis.position = axis.position_at(t)
        axis.trajectory = None
        axis.stopped_at = t
        axis.arrival_error = None
        axis.state = IDLE

    # -- command handlers ---------------------------------------------------------------------

    def _position(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        return None if axis is None else format_number(axis.to_units(axis.position_at(t)))

    def _move_absolute(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        value = self._number(command, t)
        if value is not None:
            self._move_to(axis, t, axis.to_counts(value))
        return None

    def _move_relative(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        value = self._number(command, t)
        if value is None:
            return None
        if axis.state == MOVING and axis.trajectory is not None:
            base = axis.trajectory.final
        else:
            base = axis.position_at(t)
        self._move_to(axis, t, base + axis.to_counts(value))
        return None

    def _move_to(self, axis: Axis, t: float, target: float) -> None:
        if not self._can_move(axis, t):
            return
        if axis.settings["TJ"] not in _MOVE_MODES:
            self._log(axis.error(E_TRAJECTORY_MOVING), t)
            return
        if target > axis.parameters["SR"]:
            self._log(axis.error(E_SW_LIMIT_POS), t)
            return
        if target < axis.parameters["SL"]:
            self._log(axis.error(E_SW_LIMIT_NEG), t)
            return
        low, high = axis.hardware_limits()
        arrival: int | None = None
        if target > high:
            target, arrival = high, axis.error(E_HW_LIMIT_POS)
        elif target < low:
            target, arrival = low, axis.error(E_HW_LIMIT_NEG)
        self._start(axis, t, target, MOVING, axis.parameters["VA"], arrival)

    def _motion_done(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        return "1" if axis.state == IDLE else "0"

    def _jog(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        direction = command.argument
        if direction == "?":
            return "1" if axis.state == IDLE else "0"
        if direction == "":
            self._log(E_PARAMETER_MISSING, t)
            return None
        if direction not in ("+", "-"):
            self._log(E_BAD_NUMBER, t)
            return None
        if not self._can_move(axis, t):
            return None
        low, high = axis.hardware_limits()
        if direction == "+":
            soft = axis.parameters["SR"]
            target = min(soft, high)
            error = axis.error(E_SW_LIMIT_POS if soft <= high else E_HW_LIMIT_POS)
            beyond = axis.position_at(t) >= target
        else:
            soft = axis.parameters["SL"]
            target = max(soft, low)
            error = axis.error(E_SW_LIMIT_NEG if soft >= low else E_HW_LIMIT_NEG)
            beyond = axis.position_at(t) <= target
        if beyond and axis.velocity_at(t) == 0.0:
            self._log(error, t)
            return None
        self._start(axis, t, target, JOGGING, axis.parameters["VA"], error)
        return None

    def _stop(self, command: Command, t: float) -> str | None:
        if command.axis is None:
            axes = list(self._axes)
        else:
            axis = self._axis_of(command, t)
            if axis is None:
                return None
            axes = [axis]
        for axis in axes:
            if axis.state == IDLE:
                continue
            if axis.state == HOMING:
                self._log(axis.error(E_HOMING_ABORTED), t)
            trajectory = plan_stop(
                t, axis.position_at(t), axis.velocity_at(t), axis.parameters["AG"]
            )
            axis.position = axis.position_at(t)
            axis.trajectory = trajectory
            axis.arrival_error = None
            axis.state = STOPPING
            if trajectory.end <= t:
                self._finish(axis)
        return None

    def _abort(self, command: Command, t: float) -> str | None:
        for axis in self._axes:
            if axis.state != IDLE:
                self._halt(axis, t)
        return None

    def _home(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "":
            mode: int | None = axis.home_mode
        else:
            mode = self._integer(command, t, axis, 0, 6)
        if mode is None:
            return None
        if axis.state == HOMING:
            self._log(axis.error(E_DURING_HOMING), t)
            return None
        if not axis.motor_on:
            self._log(axis.error(E_HOMING_ABORTED), t)
            return None
        if axis.settings["TJ"] not in _MOVE_MODES:
            self._log(axis.error(E_TRAJECTORY_HOMING), t)
            return None
        low, high = axis.hardware_limits()
        targets = {0: 0.0, 1: axis.home_switch + axis.offset, 3: high, 4: low}
        target = targets[{2: 1, 5: 3, 6: 4}.get(mode, mode)]
        axis.homed = False
        self._start(axis, t, target, HOMING, axis.parameters["OH"])
        return None

    def _home_mode(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "?":
            return str(axis.home_mode)
        mode = self._integer(command, t, axis, 0, 6)
        if mode is not None:
            axis.home_mode = mode
        return None

    def _define_home(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "?":
            return format_number(axis.defined_home)
        value = 0.0 if command.argument == "" else self._number(command, t)
        if value is None:
            return None
        if axis.state == HOMING:
            self._log(axis.error(E_DURING_HOMING), t)
            return None
        if axis.state != IDLE:
            self._log(E_NOT_ALLOWED, t)
            return None
        counts = axis.to_counts(value)
        axis.offset += counts - axis.position
        axis.position = counts
        axis.defined_home = value
        return None

    def _motor_on(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "?":
            return "1" if axis.motor_on else "0"
        if axis.settings["QM"] == 0:
            self._log(axis.error(E_MOTOR_TYPE), t)
            return None
        axis.motor_on = True
        return None

    def _motor_off(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if axis.state != IDLE:
            self._halt(axis, t)
        axis.motor_on = False
        return None

    def _units(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "?":
            return str(axis.units)
        units = self._integer(command, t, axis, 0, 11)
        if units is not None:
            axis.units = units
        return None

    def _resolution(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "?":
            return format_number(axis.units_per_count())
        self._log(E_BAD_NUMBER if command.argument else E_PARAMETER_MISSING, t)
        return None

    def _identify_stage(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        return f"SIM-STAGE-{axis.number}, SN{axis.number:05d}"

    def _parameter(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        name = command.mnemonic
        if command.argument == "?":
            return format_number(axis.to_units(axis.parameters[name]))
        value = self._number(command, t)
        if value is None:
            return None
        counts = axis.to_counts(value)
        rule = _PARAMETER_RULES[name]
        if rule in (_VELOCITY, _ACCELERATION, _POSITIVE) and counts <= 0.0:
            self._log(axis.error(E_PARAMETER), t)
            return None
        if rule == _NON_NEGATIVE and counts < 0.0:
            self._log(axis.error(E_PARAMETER), t)
            return None
        if rule == _VELOCITY and counts > axis.parameters["VU"] * (1 + 1e-12):
            self._log(axis.error(E_MAX_VELOCITY), t)
            return None
        if rule == _ACCELERATION and counts > axis.parameters["AU"] * (1 + 1e-12):
            self._log(axis.error(E_MAX_ACCELERATION), t)
            return None
        axis.parameters[name] = counts
        return None

    def _error_code(self, command: Command, t: float) -> str | None:
        return str(self._errors.popleft().code) if self._errors else "0"

    def _error_message(self, command: Command, t: float) -> str | None:
        entry = self._errors.popleft() if self._errors else _ErrorEntry(0, self._ticks(t))
        return f"{entry.code}, {entry.ticks}, {error_message(entry.code)}"

    def _version(self, command: Command, t: float) -> str | None:
        return VERSION

    def _wait(self, command: Command, t: float) -> str | None:
        if command.mnemonic == "WP":
            if self._axis_of(command, t) is not None:
                self._number(command, t)
            return None
        if command.mnemonic == "WS" and command.axis is not None:
            self._axis_of(command, t)
        if command.argument and _NUMBER.fullmatch(command.argument) is None:
            self._log(E_BAD_NUMBER, t)
        elif command.mnemonic == "WT" and command.argument == "":
            self._log(E_PARAMETER_MISSING, t)
        return None

    def _travel_limit(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        if command.argument == "?":
            return "1" if axis.state == IDLE else "0"
        if command.argument == "":
            self._log(E_PARAMETER_MISSING, t)
            return None
        if command.argument not in ("+", "-"):
            self._log(E_BAD_NUMBER, t)
            return None
        if not self._can_move(axis, t):
            return None
        if axis.settings["TJ"] not in _MOVE_MODES:
            self._log(axis.error(E_TRAJECTORY_MOVING), t)
            return None
        low, high = axis.hardware_limits()
        self._start(axis, t, high if command.argument == "+" else low, MOVING,
                    axis.parameters["VA"])
        return None

    def _no_argument(self, command: Command, t: float) -> bool:
        """Status queries take nothing but an optional ``?``; anything else logs 7."""
        if command.argument in ("", "?"):
            return True
        self._log(E_BAD_NUMBER, t)
        return False

    def _controller_status(self, command: Command, t: float) -> str | None:
        if not self._no_argument(command, t):
            return None
        bits = 0x40
        for axis in self._axes:
            if axis.state != IDLE:
                bits |= 1 << (axis.number - 1)
        if any(axis.motor_on for axis in self._axes):
            bits |= 0x10
        return chr(bits)

    def _controller_activity(self, command: Command, t: float) -> str | None:
        # No stored programs, no manual jog, remote mode, and no wait pending while TX runs.
        return chr(0x40) if self._no_argument(command, t) else None

    def _hardware_status(self, command: Command, t: float) -> str | None:
        if not self._no_argument(command, t):
            return None
        inputs = home_signals = 0
        for axis in self._axes:
            bit = 1 << (axis.number - 1)
            position = axis.position_at(t)
            low, high = axis.hardware_limits()
            switch = axis.home_switch + axis.offset
            if position >= high - 0.5:
                inputs |= bit
            if position <= low + 0.5:
                inputs |= bit << 3
            if abs(position - switch) <= 0.5:
                inputs |= bit << 8
            if position >= switch:
                home_signals |= bit
        return f"{inputs:X}H, {home_signals:X}H"

    def _system_configuration(self, command: Command, t: float) -> str | None:
        if not self._no_argument(command, t):
            return None
        return f"{(1 << len(self._axes)) - 1:X}H"

    def _device_address(self, command: Command, t: float) -> str | None:
        if command.argument == "?":
            return str(self._device_address_value)
        value = self._number(command, t)
        if value is None:
            return None
        if value != int(value) or not 1 <= value <= 31:
            self._log(E_BAD_NUMBER, t)
            return None
        self._device_address_value = int(value)
        return None

    def _setting(self, command: Command, t: float) -> str | None:
        axis = self._axis_of(command, t)
        if axis is None:
            return None
        name = command.mnemonic
        if command.argument == "?":
            value = axis.settings[name]
            if name in _HEX_SETTINGS:
                return f"{int(value):X}H"
            return format_number(value)
        argument = command.argument
        if name in _HEX_SETTINGS and re.fullmatch(r"[0-9A-F]+H", argument):
            number: float | None = float(int(argument[:-1], 16))
        else:
            number = self._number(command, t)
        if number is None:
            return None
        _default, low, high = _SETTINGS[name]
        whole = name in _INTEGER_SETTINGS
        if not low <= number <= high or (whole and number != int(number)):
            self._log(axis.error(E_PARAMETER), t)
            return None
        if name in _SETTINGS_FIXED_IN_MOTION and axis.state != IDLE:
            self._log(E_NOT_ALLOWED, t)
            return None
        axis.settings[name] = int(number) if whole else number
        return None

    def _nothing(self, command: Command, t: float) -> str | None:
        return None

    def _reset(self, command: Command, t: float) -> str | None:
        self._power_on(t)
        return None


def _milliseconds(argument: str) -> float:
    """Delay of ``WS``/``WT``; an unusable number waits 0 ms (its error is logged on execution)."""
    if _NUMBER.fullmatch(argument) is None:
        return 0.0
    return max(float(argument), 0.0)
