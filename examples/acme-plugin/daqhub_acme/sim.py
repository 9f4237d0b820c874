"""A simulated ACME TC-1 temperature controller, written from the README's protocol section.

Registered with daqhub-sims through the entry-point group ``daqhub_sims.models``, so
``sim://acmetemp?tau=2&noise=0.01`` reaches one. The temperature is computed from the device
clock whenever the host asks, so nothing runs in a thread and a ``ManualClock`` gives exact,
repeatable behaviour. Model choices where the manual leaves room are listed in the README
("The simulator"); a driver must not depend on them.

This module is the only one of daqhub-acme that imports daqhub-sims (a test dependency);
the driver never imports it.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping

from daqhub_sims.device import Clock
from daqhub_sims.linesim import LineDevice, number_option
from daqhub_sims.model_options import SimOption, with_defaults

SETPOINT_MIN_K = 3.0
SETPOINT_MAX_K = 500.0
#: Characters a command line may have before its CR.
MAX_LINE = 32
#: Heater output needed per kelvin of setpoint above ambient, and per kelvin of error.
HOLD_GAIN = 0.5
ERROR_GAIN = 10.0

ERRORS: dict[int, str] = {
    1: "UNKNOWN COMMAND",
    2: "BAD ARGUMENT",
    3: "OUT OF RANGE",
    4: "LINE TOO LONG",
}

#: A plain decimal number as the manual defines ``<K>``: sign, digits, point, fraction.
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SERIAL = re.compile(r"^[A-Za-z0-9]+$")


def _number_option(options: Mapping[str, str], name: str) -> float:
    return number_option(options, name, device="TC-1")


class AcmeTempSim(LineDevice):
    """ACME TC-1 on RS-232.

    Options: :attr:`OPTIONS` (strings, as they come from a ``sim://`` URL); any other is
    refused, so a typo (``serail=X9``) does not serve the defaults. The line options of a
    ``sim://`` URL (``latency``, ``baud``, ``name``) never reach the device.
    """

    summary = "ACME TC-1 temperature controller on RS-232"
    OPTIONS = (
        SimOption("serial", "A0001", "serial number in the *IDN? reply"),
        SimOption("ambient", "293.15", "room temperature in K: the power-on temperature and "
                                       "setpoint"),
        SimOption("tau", "5", "time constant in s; 0 makes the temperature jump to the "
                              "setpoint"),
        SimOption("noise", "0", "rms of Gaussian noise (K) added to each TEMP? reading"),
        SimOption("seed", "0", "seed of that noise, so a sequence of readings is repeatable"),
    )
    baudrate = 9600
    line_end, reply_end, skip_leading, max_line = b"\r", b"\r\n", b"\n", MAX_LINE

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)  # refuses an option OPTIONS does not declare
        given = with_defaults(self.OPTIONS, self.options)
        self.serial = given["serial"]
        if not _SERIAL.match(self.serial):
            raise ValueError(f"TC-1 option serial={self.serial!r}: letters and digits only")
        self.ambient = _number_option(given, "ambient")
        self.tau = _number_option(given, "tau")
        self.noise = _number_option(given, "noise")
        seed = _number_option(given, "seed")
        if self.tau < 0 or self.noise < 0:
            raise ValueError("TC-1 options tau and noise must be >= 0")
        if self.ambient <= 0:
            raise ValueError(f"TC-1 option ambient={self.ambient} must be > 0 K")
        if seed != int(seed):
            raise ValueError(f"TC-1 option seed={seed} must be an integer")
        self._rng = random.Random(int(seed))
        # The temperature is start_k at start_t and relaxes towards the setpoint from there.
        self._setpoint = self.ambient
        self._start_k = self.ambient
        self._start_t = self.clock.now()

    # -- the physics ------------------------------------------------------------------------

    def temperature(self) -> float:
        """The sensor temperature now (K), without noise."""
        if self.tau == 0:
            return self._setpoint
        elapsed = max(0.0, self.clock.now() - self._start_t)
        return self._setpoint + (self._start_k - self._setpoint) * math.exp(-elapsed / self.tau)

    def heater(self) -> float:
        """Heater output now (%)."""
        drive = (HOLD_GAIN * (self._setpoint - self.ambient)
                 + ERROR_GAIN * (self._setpoint - self.temperature()))
        return min(100.0, max(0.0, drive))

    @property
    def setpoint(self) -> float:
        return self._setpoint

    def _set_setpoint(self, kelvin: float) -> None:
        self._start_k = self.temperature()
        self._start_t = self.clock.now()
        self._setpoint = kelvin

    # -- commands -----------------------------------------------------------------------------

    def overlong(self) -> str:
        return self._error(4)

    def answer(self, line: str) -> str:
        words = line.split()
        command, args = words[0].upper(), words[1:]
        if command.endswith("?"):
            return self._query(command, args)
        if command == "SETP":
            return self._setp(args)
        return self._error(1)

    def _error(self, code: int) -> str:
        return f"ERR {code} {ERRORS[code]}"

    def _query(self, command: str, args: list[str]) -> str:
        answers = {"*IDN?": self._idn, "TEMP?": self._temp, "SETP?": self._setp_query,
                   "HEAT?": self._heat}
        answer = answers.get(command)
        if answer is None:
            return self._error(1)
        return self._error(2) if args else answer()

    def _idn(self) -> str:
        return f"ACME,TC-1,{self.serial},1.0"

    def _temp(self) -> str:
        value = self.temperature()
        if self.noise:
            value += self._rng.gauss(0.0, self.noise)
        return f"{value:+.3f}"

    def _setp_query(self) -> str:
        return f"{self._setpoint:+.3f}"

    def _heat(self) -> str:
        return f"{self.heater():.1f}"

    def _setp(self, args: list[str]) -> str:
        if len(args) != 1 or not _DECIMAL.match(args[0]):
            return self._error(2)
        kelvin = round(float(args[0]), 3)
        if not SETPOINT_MIN_K <= kelvin <= SETPOINT_MAX_K:
            return self._error(3)
        self._set_setpoint(kelvin)
        return "OK"
