"""Simulated Newport 1830-C optical power meter on RS-232, written from the protocol reference.

The meter takes a raw sample every :data:`SAMPLE_PERIOD` seconds of the device clock; samples
are computed lazily when the host talks to the meter, so nothing runs in a thread and a
:class:`~daqhub_sims.device.ManualClock` gives exact, repeatable behaviour.

Model choices where the reference leaves room (a driver must not depend on them):

- Detector: silicon, calibrated for 400-1100 nm (options ``wl_min``/``wl_max``). Its
  responsivity (:func:`silicon_responsivity`) is a smooth textbook-like curve: quantum
  efficiency 0.9 times a logistic blue roll-off at 380 nm and a logistic band-gap cut-off at
  1020 nm, times lambda/1239.84 (about 0.18 A/W at 400 nm, 0.46 at 633, 0.64 at 900, 0.14 at
  1064). Like the real meter, the reading is calibrated with the responsivity at the set
  wavelength ``W``: reading = P x R(source) / R(W). The light's wavelength is option
  ``source_nm``; without it the light is taken to be at whatever ``W`` says (reading = P).
- Noise is relative and Gaussian (option ``noise``, default 0.001), from a ``random.Random``
  seeded with option ``seed`` (default 0). Filters are moving averages of the last 16 (slow),
  4 (medium) or 1 (fast) samples. Power-on filter: fast.
- Ranges: full scale of range n is 2e-10 x 10**(n-1) W (range 8 = 2 mW), x1000 with the
  attenuator (``A1``, the meter then scales the reading back). Above full scale the over-range
  bit is set; the amplifier clips at 1.1 x full scale, which sets the saturation bit and holds
  the reading at the clip level. Both bits describe the latest sample.
- Auto-range (``R0``, power-on) jumps straight to the most sensitive range whose full scale
  holds the sample with 10 % headroom, switches down only below 9 % of full scale, and is busy
  for :data:`AUTORANGE_TIME` (no samples, busy bit set, filter restarts).
- ``O`` (auto-calibration) is busy for :data:`CALIBRATION_TIME`. Power-up is not simulated:
  the meter behaves as if it had been running, its filter already full at the first contact.
- ``Z1`` takes the latest reading as the offset (the real meter takes the next one, at most one
  sample period later); ``Z0`` stops subtracting it.
- ``S`` stores the latest displayed power (zero applied) as reference; a reading <= 0 cannot
  be a reference and sets the parameter-error bit. Power-up reference 1 mW.
- W-mode ``D?`` text follows the display, so it depends on the value and the range, giving
  the forms quoted from real meters (``5E-9``, ``+.75E-9``, ``1.23E-6``): the
  exponent is the range's display unit (-9 for the nW ranges 1-3, -6 for the uW ranges 4-6,
  -3 for ranges 7-8; the attenuator's ranges are 1000 times higher), the mantissa has the
  range's resolution (four significant digits at full scale: ``.2000`` nW on range 1,
  ``2.000`` on range 2, ``20.00`` on range 3), trailing zeros and a bare point are dropped,
  and a mantissa below 1 loses its leading zero and carries an explicit sign (``+.11E-9``).
  The exact rule is not in the reference [U]; drivers must parse any such float.
- dB and dBm two decimals (``-15.24``), REL 4 significant digits in decimal (``0.5000``).
  dB of a power <= 0 is computed from 1e-15 W.
- One command per line. An unknown letter sets the command-error bit, a bad argument (or an
  argument to ``S``, ``C``, ``O``, or a set value where only ``?`` is allowed) the
  parameter-error bit; nothing is ever replied for an error. Lines longer than 64 characters
  are command errors.
- ``E1`` echo, as the sister 2832-C's manual describes RS-232 echo (the reference: assume the
  same [U]): every received character is sent back as it arrives, a line terminator as
  CR LF, and replies end with CR LF instead of LF. ``E1`` itself is not echoed (echo starts
  after it); the characters of ``E0`` are. Option ``echo=1`` powers the meter on in echo
  mode, so a driver can be tested against a meter left in either state.
- The incident power comes from option ``power`` (W, default 1e-6) or from a callable given to
  :meth:`Newport1830C.set_power_source`; the callable is evaluated once each time the meter
  catches up with its clock, so all samples of one catch-up share one value.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping

from daqhub_sims.device import Clock, SimDevice
from daqhub_sims.linesim import number_option
from daqhub_sims.model_options import SimOption, with_defaults
from daqhub_sims.optics import polariser_source

#: Seconds between raw samples.
SAMPLE_PERIOD = 0.04
#: Seconds the meter is busy after an automatic range change.
AUTORANGE_TIME = 0.1
#: Seconds the meter is busy after ``O``.
CALIBRATION_TIME = 0.3
#: Full scale of range 1 in watts (without attenuator); each range up is one decade.
FULL_SCALE_RANGE_1 = 2e-10
#: Attenuation of the detector's attenuator cap (``A1``); the meter compensates it.
ATTENUATOR_FACTOR = 1000.0
#: Amplifier clip level as a multiple of full scale.
CLIP_LEVEL = 1.1
#: Samples averaged by filter 1 (slow), 2 (medium), 3 (fast).
FILTER_LENGTH: dict[int, int] = {1: 16, 2: 4, 3: 1}
#: Power-up dB/REL reference in watts.
POWER_UP_REFERENCE = 1e-3
#: Ticks the meter computes at most when it catches up after a long silence.
_CATCH_UP_LIMIT = 64
_MAX_LINE = 64
_TINY_POWER = 1e-15

# Status byte bits (the protocol reference).
PARAMETER_ERROR = 1
COMMAND_ERROR = 2
SATURATED = 4
OVER_RANGE = 8
MESSAGE_AVAILABLE = 16
BUSY = 32
SERVICE_REQUEST = 64
READ_DONE = 128


def silicon_responsivity(wavelength_nm: float) -> float:
    """Responsivity in A/W of the simulated silicon photodiode (smooth, positive everywhere)."""

    def logistic(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))

    efficiency = 0.9 * logistic((wavelength_nm - 380.0) / 45.0)
    efficiency *= logistic((1020.0 - wavelength_nm) / 30.0)
    return efficiency * wavelength_nm / 1239.84


def full_scale(range_number: int, attenuator: bool) -> float:
    """Full-scale power in watts of range 1..8."""
    scale = FULL_SCALE_RANGE_1 * 10.0 ** (range_number - 1)
    return scale * ATTENUATOR_FACTOR if attenuator else scale


def format_watts(value: float, scale: float) -> str:
    """``D?`` text in W mode for ``value`` shown on a range of full scale ``scale`` W."""
    exponent = 3 * math.floor((math.log10(scale) + 1.0) / 3.0)
    unit = 10.0**exponent
    decimals = max(0, 3 - math.floor(math.log10(scale / unit) + 1e-9))
    text = f"{value / unit if math.isfinite(value) else 0.0:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("0", "-0", ""):
        text = "0"
    elif text.startswith("0."):
        text = "+" + text[1:]
    elif text.startswith("-0."):
        text = "-" + text[2:]
    return f"{text}E{exponent}"


def format_decimal(value: float, significant: int = 4) -> str:
    """``D?`` text in REL mode: decimal with ``significant`` digits, never an exponent."""
    if value == 0.0 or not math.isfinite(value):
        return "0.000"
    decimals = significant - 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{max(0, min(decimals, 15))}f}"


OPTIONS = (
    SimOption("power", "1e-6", "incident power, W"),
    SimOption("noise", "0.001", "relative Gaussian noise of each sample"),
    SimOption("seed", "0", "seed of the noise generator (integer)"),
    SimOption("wavelength", "633", "power-on W setting, nm"),
    SimOption("source_nm", None, "the light's wavelength, nm (default: whatever W is set to)"),
    SimOption("wl_min", "400", "shortest calibrated wavelength, nm"),
    SimOption("wl_max", "1100", "longest calibrated wavelength, nm"),
    SimOption("echo", "0", "1: power on in echo mode (E1)"),
    SimOption("polariser", None, "LINE:ADDR of a simulated ELL14 whose angle sets the power "
              "by Malus' law, e.g. bench:0 (sim://elliptec?name=bench)"),
    SimOption("polariser_offset", "0", "with polariser: angle of full transmission, deg"),
    SimOption("extinction", "0.001", "with polariser: transmitted fraction when crossed"),
)


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "on", "yes"):
        return True
    if text.lower() in ("0", "false", "off", "no", ""):
        return False
    raise ValueError(f"1830-C option echo={text!r} is not a flag (use 1 or 0)")


class Newport1830C(SimDevice):
    """Newport 1830-C on RS-232.

    Options: :data:`OPTIONS` (any other is refused; a ``sim://`` URL's line options never
    reach the device).
    """

    baudrate = 9600
    summary = "Newport 1830-C optical power meter (RS-232, 9600 baud)"
    OPTIONS = OPTIONS

    def __init__(
        self, options: Mapping[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__(options, clock)
        opts = with_defaults(self.OPTIONS, self.options)
        self._power = number_option(opts, "power", device="1830-C")
        self._noise = number_option(opts, "noise", device="1830-C")
        seed = number_option(opts, "seed", device="1830-C")
        self._wl_min = int(number_option(opts, "wl_min", device="1830-C"))
        self._wl_max = int(number_option(opts, "wl_max", device="1830-C"))
        wavelength = number_option(opts, "wavelength", device="1830-C")
        self._source_nm = (None if opts.get("source_nm") is None
                           else number_option(opts, "source_nm", device="1830-C"))
        if self._power < 0 or self._noise < 0:
            raise ValueError("1830-C options power and noise must be >= 0")
        if seed != int(seed):
            raise ValueError(f"1830-C option seed={seed} must be an integer")
        if not 0 < self._wl_min <= wavelength <= self._wl_max <= 9999:
            raise ValueError(
                f"1830-C options need 0 < wl_min <= wavelength <= wl_max <= 9999, got "
                f"{self._wl_min}, {wavelength}, {self._wl_max}"
            )
        if self._source_nm is not None and self._source_nm <= 0:
            raise ValueError(f"1830-C option source_nm={self._source_nm} must be > 0")
        self._rng = random.Random(int(seed))
        self._source: Callable[[], float] | None = None
        if opts.get("polariser"):  # e.g. polariser=bench:0 (an ELL14 on line "bench")
            self._source = polariser_source(
                self._power, opts["polariser"],
                number_option(opts, "polariser_offset", device="1830-C"),
                number_option(opts, "extinction", device="1830-C"))
        self._t0 = self.clock.now()
        self._rx = bytearray()
        self._out = bytearray()
        self._after_cr = False  # a CR LF terminator is echoed once

        self._wavelength = int(wavelength)
        self._units = 1
        self._auto = True
        self._range = 8
        self._attenuator = 0
        self._filter = 3
        self._run = 1
        self._zero = 0
        self._offset = 0.0
        self._reference = POWER_UP_REFERENCE
        self._mask = 0
        self._beeper = 1
        self._backlight = 1
        self._lockout = 0
        self._echo = 1 if _flag(opts["echo"]) else 0

        self._parameter_error = False
        self._command_error = False
        self._saturated = False
        self._over_range = False
        self._read_done = False
        self._busy_until = -math.inf

        self._started = False
        self._tick = 0
        self._window: deque[float] = deque(maxlen=FILTER_LENGTH[self._filter])
        self._reading = 0.0

    # -- optical input ------------------------------------------------------------------------

    def set_power_source(self, source: Callable[[], float] | None) -> None:
        """Take incident power (W) from ``source`` from now on; ``None`` returns to ``power``.

        Samples already due keep the power they had, so a reading lags a change the way a
        filtered real reading does.
        """
        if self._started:
            self._acquire(self.clock.now())
        self._source = source

    def set_power(self, watts: float) -> None:
        """Constant incident power from now on (replaces any power source)."""
        if watts < 0 or not math.isfinite(watts):
            raise ValueError(f"incident power must be a finite value >= 0 W, got {watts}")
        if self._started:
            self._acquire(self.clock.now())
        self._source = None
        self._power = watts

    def incident_power(self) -> float:
        """The power currently falling on the detector, in W."""
        value = self._source() if self._source is not None else self._power
        return max(float(value), 0.0)

    # -- SimDevice ------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        now = self.clock.now()
        for byte in data:
            if self._echo and not (byte == 0x0A and self._after_cr):
                self._out += b"\r\n" if byte in (0x0A, 0x0D) else bytes((byte,))
            self._after_cr = byte == 0x0D
            if byte in (0x0A, 0x0D):
                line = self._rx.decode("latin-1")
                self._rx.clear()
                self._line(line, now)
            else:
                self._rx.append(byte)
                if len(self._rx) > _MAX_LINE:
                    self._rx.clear()
                    self._command_error = True

    def read(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_output_in(self) -> float | None:
        return 0.0 if self._out else None

    # -- acquisition ----------------------------------------------------------------------

    def _tick_at(self, t: float) -> int:
        return math.floor((t - self._t0) / SAMPLE_PERIOD + 1e-9)

    def _acquire(self, now: float) -> None:
        """Take every sample due by ``now`` (at most the last few after a long silence)."""
        latest = self._tick_at(now)
        power = self.incident_power()
        if not self._started:
            self._started = True
            self._tick = latest - FILTER_LENGTH[1]
            if self._auto:
                self._range = self._fitting_range(self._signal(power))
        first = max(self._tick + 1, latest - _CATCH_UP_LIMIT)
        for tick in range(first, latest + 1):
            self._sample(self._t0 + tick * SAMPLE_PERIOD, power)
        self._tick = max(self._tick, latest)

    def _signal(self, power: float) -> float:
        """Calibrated reading of ``power`` before noise: the detector sees the source's
        wavelength, the meter divides by the responsivity at the set one."""
        if self._source_nm is None:
            return power
        ratio = silicon_responsivity(self._source_nm) / silicon_responsivity(self._wavelength)
        return power * ratio

    def _full_scale(self, range_number: int) -> float:
        return full_scale(range_number, bool(self._attenuator))

    def _fitting_range(self, value: float) -> int:
        for number in range(1, 9):
            if abs(value) <= 0.9 * self._full_scale(number):
                return number
        return 8

    def _sample(self, t: float, power: float) -> None:
        if not self._run or t < self._busy_until:
            return
        raw = self._signal(power) * (1.0 + self._noise * self._rng.gauss(0.0, 1.0))
        if self._auto:
            scale = self._full_scale(self._range)
            if abs(raw) > scale or abs(raw) < 0.09 * scale:
                best = self._fitting_range(raw)
                if best != self._range:
                    self._range = best
                    self._busy_until = t + AUTORANGE_TIME
                    self._window.clear()
                    return
        scale = self._full_scale(self._range)
        clip = CLIP_LEVEL * scale
        self._saturated = abs(raw) > clip
        self._window.append(max(min(raw, clip), -clip))
        self._reading = math.fsum(self._window) / len(self._window)
        self._over_range = abs(self._reading) > scale
        self._read_done = True

    # -- commands -----------------------------------------------------------------------------

    def _reply(self, text: str) -> None:
        self._out += text.encode("ascii") + (b"\r\n" if self._echo else b"\n")

    def _line(self, line: str, now: float) -> None:
        text = "".join(line.split()).upper()
        if not text:
            return
        self._acquire(now)
        letter, argument = text[0], text[1:]
        if letter == "D":
            self._read_reading(argument)
        elif letter == "W":
            self._set_wavelength(argument)
        elif letter == "R":
            self._set_range(argument)
        elif letter == "F":
            value = self._setting(argument, self._filter, 1, 3)
            if value is not None:
                self._filter = value
                self._window = deque(self._window, maxlen=FILTER_LENGTH[value])
        elif letter == "Z":
            value = self._setting(argument, self._zero, 0, 1)
            if value is not None:
                self._zero = value
                if value:
                    self._offset = self._reading
        elif letter == "U":
            self._units = self._setting_or_keep(argument, self._units, 1, 4)
        elif letter == "A":
            self._attenuator = self._setting_or_keep(argument, self._attenuator, 0, 1)
        elif letter == "G":
            self._run = self._setting_or_keep(argument, self._run, 0, 1)
        elif letter == "M":
            self._mask = self._setting_or_keep(argument, self._mask, 0, 255)
        elif letter == "B":
            self._beeper = self._setting_or_keep(argument, self._beeper, 0, 1)
        elif letter == "K":
            self._backlight = self._setting_or_keep(argument, self._backlight, 0, 2)
        elif letter == "L":
            self._lockout = self._setting_or_keep(argument, self._lockout, 0, 1)
        elif letter == "E":
            self._echo = self._setting_or_keep(argument, self._echo, 0, 1)
        elif letter == "Q":
            self._query_status(argument, now)
        elif letter in "SCO":
            self._action(letter, argument, now)
        else:
            self._command_error = True

    def _setting(self, argument: str, current: int, low: int, high: int) -> int | None:
        """A new value for a numeric setting, or None after answering ``?`` or a bad argument."""
        if argument == "?":
            self._reply(str(current))
            return None
        if not argument.isdigit() or not low <= int(argument) <= high:
            self._parameter_error = True
            return None
        return int(argument)

    def _setting_or_keep(self, argument: str, current: int, low: int, high: int) -> int:
        value = self._setting(argument, current, low, high)
        return current if value is None else value

    def _displayed_watts(self) -> float:
        return self._reading - self._offset if self._zero else self._reading

    def _read_reading(self, argument: str) -> None:
        if argument != "?":
            self._parameter_error = True
            return
        watts = self._displayed_watts()
        if self._units == 1:
            text = format_watts(watts, self._full_scale(self._range))
        elif self._units == 2:
            text = f"{10.0 * math.log10(max(watts, _TINY_POWER) / self._reference):.2f}"
        elif self._units == 3:
            text = f"{10.0 * math.log10(max(watts, _TINY_POWER) / 1e-3):.2f}"
        else:
            text = format_decimal(watts / self._reference)
        self._read_done = False
        self._reply(text)

    def _set_wavelength(self, argument: str) -> None:
        if argument == "?":
            self._reply(f"{self._wavelength:04d}")
        elif argument.isdigit() and self._wl_min <= int(argument) <= self._wl_max:
            self._wavelength = int(argument)
        else:
            self._parameter_error = True

    def _set_range(self, argument: str) -> None:
        if argument == "?":
            self._reply(str(self._range))
            return
        value = self._setting(argument, self._range, 0, 8)
        if value is None:
            return
        self._auto = value == 0
        if value:
            self._range = value

    def _query_status(self, argument: str, now: float) -> None:
        if argument != "?":
            self._parameter_error = True
            return
        self._reply(str(self._status(now)))

    def _status(self, now: float) -> int:
        bits = 0
        if self._parameter_error:
            bits |= PARAMETER_ERROR
        if self._command_error:
            bits |= COMMAND_ERROR
        if self._saturated:
            bits |= SATURATED
        if self._over_range:
            bits |= OVER_RANGE
        if self._out:
            bits |= MESSAGE_AVAILABLE
        if now < self._busy_until:
            bits |= BUSY
        if self._read_done:
            bits |= READ_DONE
        if bits & self._mask & ~SERVICE_REQUEST:
            bits |= SERVICE_REQUEST
        return bits

    def _action(self, letter: str, argument: str, now: float) -> None:
        if argument:
            self._parameter_error = True
            return
        if letter == "C":
            self._parameter_error = self._command_error = False
            self._saturated = self._over_range = self._read_done = False
        elif letter == "S":
            watts = self._displayed_watts()
            if watts > 0.0:
                self._reference = watts
            else:
                self._parameter_error = True
        else:
            self._busy_until = now + CALIBRATION_TIME
            self._window.clear()
