"""A SCPI instrument model (DMM and power supply) with a real SCPI parser.

pyvisa-sim matches exact strings and keeps no coupled state, so drivers that
must cope with short/long forms, compound messages, the error queue, a PSU
whose measured current follows its load, or readings that depend on the
configured function are tested against this model instead (served over TCP by
:mod:`daqhub_sims.scpi_tcp`).

Conventions follow IEEE 488.2 / SCPI-99 (the protocol reference names the codes):

* Keywords match their short form (the upper-case letters of the canonical
  spelling, ``MEAS``) or their long form (``MEASURE``), in any case; nothing in
  between. ``[...]`` nodes are optional.
* ``;`` separates message units. A header without a leading ``:`` is first
  resolved relative to the previous command's parent node (``SOUR:VOLT 1;CURR
  2``), then from the root; common commands (``*XXX``) do not move the path.
* The replies of all queries of one message are joined with ``;`` and, over a
  transport, sent with a single terminator.
* A command error (-1xx) discards the rest of the message; an execution
  error (-2xx) only skips its own unit. A query that fails gives no reply.
* A known header used in the wrong form (``*RST?``, ``MEAS:VOLT:DC`` without
  ``?``) is ``-100,"Command error"``; an unknown header is -113.
* The error queue holds ``error_queue_size`` entries; when it overflows the
  newest entry becomes ``-350,"Queue overflow"`` and later errors are lost.

The model does no I/O and takes no locks: the transport serialises calls.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Standard SCPI error texts (SCPI-99 vol. 2 ch. 21); the subset this model raises.
ERROR_MESSAGES: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -220: "Parameter error",
    -222: "Data out of range",
    -230: "Data corrupt or stale",
    -350: "Queue overflow",
}

#: Reading a DMM returns this when the input exceeds the fixed range (SCPI "overload").
OVERLOAD = 9.9e37

# Standard event status register bits (IEEE 488.2 11.5.1).
ESR_OPC = 1
ESR_QYE = 4
ESR_DDE = 8
ESR_EXE = 16
ESR_CME = 32


class ScpiError(Exception):
    """A SCPI error raised by a handler; the parser turns it into a queue entry."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{self.entry} ({detail})" if detail else self.entry)

    @property
    def entry(self) -> str:
        """The ``SYST:ERR?`` text, e.g. ``-113,"Undefined header"``."""
        return format_error(self.code)


def format_error(code: int) -> str:
    """``SYST:ERR?`` reply for ``code``; 0 is written ``+0`` as most instruments do."""
    number = "+0" if code == 0 else str(code)
    return f'{number},"{ERROR_MESSAGES.get(code, "Unknown error")}"'


def format_number(value: float) -> str:
    """The one number format every reply uses (``+1.000000E+00``), like Keysight NR3."""
    return f"{value:+.6E}"


# --- header patterns -----------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    long: str
    short: str
    optional: bool

    def accepts(self, token: str) -> bool:
        upper = token.upper()
        return upper == self.short or upper == self.long


def _node(spelling: str, optional: bool) -> _Node:
    short = "".join(ch for ch in spelling if not ch.islower())
    return _Node(long=spelling.upper(), short=short, optional=optional)


def parse_pattern(pattern: str) -> tuple[tuple[_Node, ...], bool]:
    """Split ``MEASure[:SCALar]:VOLTage[:DC]?`` into nodes and a query flag.

    Written by hand rather than with a regex so that a malformed table entry fails
    loudly at import time.
    """
    query = pattern.endswith("?")
    text = pattern[:-1] if query else pattern
    nodes: list[_Node] = []
    i = 0
    while i < len(text):
        if text[i] == "[":
            end = text.index("]", i)
            nodes.append(_node(text[i + 1 : end].strip(":"), optional=True))
            i = end + 1
        elif text[i] == ":":
            i += 1
        else:
            end = i
            while end < len(text) and text[end] not in ":[":
                end += 1
            nodes.append(_node(text[i:end], optional=False))
            i = end
    if not nodes or any(not n.long.isalnum() for n in nodes):
        raise ValueError(f"bad SCPI header pattern {pattern!r}")
    return tuple(nodes), query


def _tokens_match(nodes: Sequence[_Node], tokens: Sequence[str]) -> bool:
    if not nodes:
        return not tokens
    head, rest = nodes[0], nodes[1:]
    if tokens and head.accepts(tokens[0]) and _tokens_match(rest, tokens[1:]):
        return True
    return head.optional and _tokens_match(rest, tokens)


Handler = Callable[[list[str]], str | None]


class Command:
    """One row of a command table: a header pattern and what it does.

    Common commands (``*IDN?``) match their keyword exactly; compound headers match
    node by node with short/long forms and optional nodes.
    """

    def __init__(self, pattern: str, handler: Handler) -> None:
        self.pattern = pattern
        self.handler = handler
        self.is_common = pattern.startswith("*")
        if self.is_common:
            self.is_query = pattern.endswith("?")
            self._keyword = pattern.rstrip("?").upper()
            self._nodes: tuple[_Node, ...] = ()
        else:
            self._nodes, self.is_query = parse_pattern(pattern)

    def matches(self, tokens: Sequence[str]) -> bool:
        if self.is_common:
            return len(tokens) == 1 and tokens[0].upper() == self._keyword
        return _tokens_match(self._nodes, tokens)


# --- message syntax ------------------------------------------------------------------

_COMMON_HEADER = re.compile(r"\*[A-Za-z]+\??")
_COMPOUND_HEADER = re.compile(r":?[A-Za-z][A-Za-z0-9_]*(:[A-Za-z][A-Za-z0-9_]*)*\??")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _split_outside_quotes(text: str, separator: str) -> tuple[list[str], bool]:
    """Split on ``separator`` except inside "..." or '...' strings (doubled quotes escape).

    The flag is True when the text ends inside an unterminated string: the last
    part is then the one holding the opening quote, with everything after it.
    """
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for ch in text:
        if quote is not None:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts, quote is not None


def _split_params(text: str) -> list[str]:
    if not text.strip():
        return []
    parts, _ = _split_outside_quotes(text, ",")
    params = [p.strip() for p in parts]
    if any(not p for p in params):
        raise ScpiError(-102, "empty parameter")
    return params


def unquote(param: str) -> str:
    """Contents of a SCPI string parameter; -220 when it is not a quoted string."""
    if len(param) >= 2 and param[0] == param[-1] and param[0] in "\"'":
        q = param[0]
        return param[1:-1].replace(q + q, q)
    raise ScpiError(-220, f"expected a quoted string, got {param!r}")


def parse_number(
    param: str,
    *,
    minimum: float,
    maximum: float,
    default: float,
) -> float:
    """A decimal numeric parameter or MIN/MAX/DEF, range-checked (-220 / -222)."""
    word = param.upper()
    if word in ("MIN", "MINIMUM"):
        return minimum
    if word in ("MAX", "MAXIMUM"):
        return maximum
    if word in ("DEF", "DEFAULT"):
        return default
    if not _DECIMAL.fullmatch(param):
        raise ScpiError(-220, f"not a number: {param!r}")
    value = float(param)
    if not minimum <= value <= maximum:
        raise ScpiError(-222, f"{value} outside [{minimum}, {maximum}]")
    return value


def parse_bool(param: str) -> bool:
    """ON/OFF or a number (non-zero after rounding is ON), as SCPI boolean data."""
    word = param.upper()
    if word == "ON":
        return True
    if word == "OFF":
        return False
    if _DECIMAL.fullmatch(param):
        return round(float(param)) != 0
    raise ScpiError(-220, f"not a boolean: {param!r}")


def no_params(params: list[str]) -> None:
    if params:
        raise ScpiError(-108, f"unexpected parameter {params[0]!r}")


def at_most(params: list[str], count: int) -> None:
    if len(params) > count:
        raise ScpiError(-108, f"at most {count} parameter(s) allowed, got {len(params)}")


def exactly_one(params: list[str]) -> str:
    if not params:
        raise ScpiError(-109)
    at_most(params, 1)
    return params[0]


# --- the instrument ------------------------------------------------------------------


class ScpiInstrument:
    """Parser, IEEE 488.2 common commands, status registers and the error queue.

    Profiles subclass this and add their command table and state; build one with
    :func:`make_instrument`.
    """

    profile: str = "generic"
    model: str = "SCPI0"

    def __init__(
        self,
        *,
        seed: int = 0,
        serial: str = "TCP0001",
        manufacturer: str = "SIM",
        firmware: str = "1.0",
        error_queue_size: int = 20,
    ) -> None:
        if error_queue_size < 2:
            raise ValueError("SCPI requires an error queue of at least 2 entries")
        self.identity = f"{manufacturer},{self.model},{serial},{firmware}"
        self.rng = random.Random(seed)
        self.error_queue_size = error_queue_size
        self._errors: deque[int] = deque()
        self.esr = 0
        self.ese = 0
        self.sre = 0
        self._commands: list[Command] = self._common_commands() + self._profile_commands()
        self.reset()

    # --- public API ---

    def handle(self, message: str) -> str | None:
        """Execute one program message (no terminator); return the response message or None."""
        replies: list[str] = []
        path: list[str] = []
        units, unterminated = _split_outside_quotes(message, ";")
        for index, unit in enumerate(units):
            text = unit.strip()
            if unterminated and index == len(units) - 1:
                self.push_error(-102)  # an unterminated string: nothing after it can be parsed
                break
            if not text:
                continue
            try:
                reply, path = self._execute(text, path)
            except ScpiError as err:
                self.push_error(err.code)
                if -199 <= err.code <= -100:
                    break
                continue
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def reset(self) -> None:
        """``*RST``: profile defaults. Error queue and status registers are untouched (488.2)."""

    def push_error(self, code: int) -> None:
        """Queue an error and set its event bit, with SCPI overflow semantics."""
        self.esr |= _esr_bit(code)
        if len(self._errors) < self.error_queue_size - 1:
            self._errors.append(code)
        elif len(self._errors) == self.error_queue_size - 1:
            self._errors.append(-350)

    def pop_error(self) -> str:
        """``SYST:ERR?``: the oldest entry, or ``+0,"No error"``."""
        return format_error(self._errors.popleft() if self._errors else 0)

    @property
    def errors(self) -> list[int]:
        """Queued error codes, oldest first (a peek: nothing is removed)."""
        return list(self._errors)

    def clear_status(self) -> None:
        """``*CLS``."""
        self._errors.clear()
        self.esr = 0

    def status_byte(self) -> int:
        stb = 0
        if self._errors:
            stb |= 4  # EAV: error/event queue not empty
        if self.esr & self.ese:
            stb |= 32  # ESB
        if stb & self.sre:
            stb |= 64  # MSS
        return stb

    def noisy(self, value: float, relative: float, absolute: float) -> float:
        """``value`` plus seeded Gaussian noise (sigma = relative*|value| + absolute)."""
        return value + self.rng.gauss(0.0, relative * abs(value) + absolute)

    # --- profile hooks ---

    def _profile_commands(self) -> list[Command]:
        return []

    # --- parsing ---

    def _execute(self, text: str, path: list[str]) -> tuple[str | None, list[str]]:
        header, *rest = text.split(None, 1)
        param_text = rest[0] if rest else ""
        params = _split_params(param_text)
        if header.startswith("*"):
            if not _COMMON_HEADER.fullmatch(header):
                raise ScpiError(-102, f"bad header {header!r}")
            tokens = [header.rstrip("?")]
            candidates = [tokens]
        else:
            if not _COMPOUND_HEADER.fullmatch(header):
                raise ScpiError(-102, f"bad header {header!r}")
            tokens = header.lstrip(":").rstrip("?").split(":")
            candidates = [tokens] if header.startswith(":") or not path else [path + tokens, tokens]
        is_query = header.endswith("?")
        for candidate in candidates:
            command = self._lookup(candidate, is_query)
            if command is not None:
                new_path = path if header.startswith("*") else candidate[:-1]
                return command.handler(params), new_path
        for candidate in candidates:
            if self._lookup(candidate, not is_query) is not None:
                form = "command" if is_query else "query"
                raise ScpiError(-100, f"{header!r} exists only as a {form}")
        raise ScpiError(-113, f"unknown header {header!r}")

    def _lookup(self, tokens: list[str], is_query: bool) -> Command | None:
        for command in self._commands:
            if command.is_query == is_query and command.matches(tokens):
                return command
        return None

    # --- common commands ---

    def _common_commands(self) -> list[Command]:
        return [
            Command("*IDN?", self._idn),
            Command("*RST", self._rst),
            Command("*CLS", self._cls),
            Command("*OPC", self._opc),
            Command("*OPC?", self._opc_query),
            Command("*WAI", self._wai),
            Command("*TST?", self._tst),
            Command("*ESR?", self._esr_query),
            Command("*ESE", self._ese),
            Command("*ESE?", self._ese_query),
            Command("*SRE", self._sre),
            Command("*SRE?", self._sre_query),
            Command("*STB?", self._stb_query),
            Command("SYSTem:ERRor[:NEXT]?", self._syst_err),
            Command("SYSTem:ERRor:COUNt?", self._syst_err_count),
            Command("SYSTem:VERSion?", self._syst_version),
            Command("SYSTem:REMote", self._wai),
            Command("SYSTem:LOCal", self._wai),
        ]

    def _idn(self, params: list[str]) -> str:
        no_params(params)
        return self.identity

    def _rst(self, params: list[str]) -> None:
        no_params(params)
        self.reset()

    def _cls(self, params: list[str]) -> None:
        no_params(params)
        self.clear_status()

    def _opc(self, params: list[str]) -> None:
        no_params(params)
        self.esr |= ESR_OPC

    def _opc_query(self, params: list[str]) -> str:
        no_params(params)
        return "1"

    def _wai(self, params: list[str]) -> None:
        no_params(params)

    def _tst(self, params: list[str]) -> str:
        no_params(params)
        return "0"

    def _esr_query(self, params: list[str]) -> str:
        no_params(params)
        value, self.esr = self.esr, 0
        return str(value)

    def _ese(self, params: list[str]) -> None:
        self.ese = int(parse_number(exactly_one(params), minimum=0, maximum=255, default=0))

    def _ese_query(self, params: list[str]) -> str:
        no_params(params)
        return str(self.ese)

    def _sre(self, params: list[str]) -> None:
        self.sre = int(parse_number(exactly_one(params), minimum=0, maximum=255, default=0)) & ~64

    def _sre_query(self, params: list[str]) -> str:
        no_params(params)
        return str(self.sre)

    def _stb_query(self, params: list[str]) -> str:
        no_params(params)
        return str(self.status_byte())

    def _syst_err(self, params: list[str]) -> str:
        no_params(params)
        return self.pop_error()

    def _syst_err_count(self, params: list[str]) -> str:
        no_params(params)
        return str(len(self._errors))

    def _syst_version(self, params: list[str]) -> str:
        no_params(params)
        return "1999.0"


def _esr_bit(code: int) -> int:
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -399 <= code <= -300:
        return ESR_DDE
    if -499 <= code <= -400:
        return ESR_QYE
    return 0


# --- DMM -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Function:
    """One measurement function: its SCPI name, ranges and noise."""

    name: str
    ranges: tuple[float, ...]
    noise_relative: float
    noise_absolute: float


DMM_FUNCTIONS: dict[str, _Function] = {
    "VOLT:DC": _Function("VOLT:DC", (0.1, 1.0, 10.0, 100.0, 1000.0), 2e-5, 1e-6),
    "CURR:DC": _Function("CURR:DC", (0.01, 0.1, 1.0, 3.0), 5e-5, 1e-9),
    "RES": _Function("RES", (100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8), 3e-5, 1e-3),
}

#: The function patterns accepted in ``FUNC "..."``, ``CONF:<f>`` and ``MEAS:<f>?``.
_FUNCTION_PATTERNS: dict[str, str] = {
    "VOLT:DC": "VOLTage[:DC]",
    "CURR:DC": "CURRent[:DC]",
    "RES": "RESistance",
}

MAX_SAMPLE_COUNT = 1000


class ScpiDmm(ScpiInstrument):
    """A bench DMM: DC volts, DC amps, 2-wire ohms, with seeded Gaussian noise.

    ``inputs`` is what is connected to the terminals for each function; tests set
    it to steer readings. Each function keeps its own range (None = auto); a fixed
    range that the input exceeds by more than 20 % reads as overload (+9.9E+37).
    """

    profile = "dmm"
    model = "DMM1"

    def __init__(
        self, *, seed: int = 0, serial: str = "TCP0001", error_queue_size: int = 20
    ) -> None:
        self.inputs: dict[str, float] = {"VOLT:DC": 1.0, "CURR:DC": 1e-3, "RES": 1e3}
        self.function = "VOLT:DC"
        self.ranges: dict[str, float | None] = {}
        self.sample_count = 1
        self.memory: list[float] = []
        super().__init__(seed=seed, serial=serial, error_queue_size=error_queue_size)

    def reset(self) -> None:
        self.function = "VOLT:DC"
        self.ranges = dict.fromkeys(DMM_FUNCTIONS)
        self.sample_count = 1
        self.memory = []

    def reading(self) -> float:
        """One reading of the configured function, as the instrument would report it."""
        spec = DMM_FUNCTIONS[self.function]
        value = self.inputs[self.function]
        fixed = self.ranges[self.function]
        if fixed is not None and abs(value) > 1.2 * fixed:
            return OVERLOAD
        return self.noisy(value, spec.noise_relative, spec.noise_absolute)

    def effective_range(self, function: str) -> float:
        """The fixed range, or the one autoranging picks for the present input."""
        fixed = self.ranges[function]
        if fixed is not None:
            return fixed
        ranges = DMM_FUNCTIONS[function].ranges
        value = abs(self.inputs[function])
        return next((r for r in ranges if r >= value), ranges[-1])

    def _profile_commands(self) -> list[Command]:
        commands: list[Command] = []
        for function, pattern in _FUNCTION_PATTERNS.items():
            commands += [
                Command(f"MEASure[:SCALar]:{pattern}?", self._measure(function)),
                Command(f"CONFigure[:SCALar]:{pattern}", self._configure(function)),
                Command(f"[SENSe:]{pattern}:RANGe", self._set_range(function)),
                Command(f"[SENSe:]{pattern}:RANGe?", self._range_query(function)),
            ]
        commands += [
            Command("CONFigure?", self._function_query),
            Command("[SENSe:]FUNCtion[:ON]", self._func),
            Command("[SENSe:]FUNCtion[:ON]?", self._function_query),
            Command("SAMPle:COUNt", self._samp_count),
            Command("SAMPle:COUNt?", self._samp_count_query),
            Command("INITiate[:IMMediate]", self._init),
            Command("FETCh?", self._fetch),
            Command("READ?", self._read),
        ]
        return commands

    def _select(self, function: str) -> None:
        if function != self.function:
            self.function = function
        self.memory = []

    def _apply_configuration(self, function: str, params: list[str]) -> None:
        """CONF/MEAS parameters: ``[range|AUTO|MIN|MAX|DEF[,resolution|MIN|MAX|DEF]]``."""
        at_most(params, 2)
        new_range = self._parse_range(function, params[0]) if params else None
        if len(params) == 2:
            parse_number(params[1], minimum=0.0, maximum=math.inf, default=0.0)
        self._select(function)
        self.ranges[function] = new_range

    @staticmethod
    def _parse_range(function: str, param: str) -> float | None:
        """A range parameter; None means autorange. Picks the smallest range that fits."""
        if param.upper() in ("AUTO", "DEF", "DEFAULT"):
            return None
        ranges = DMM_FUNCTIONS[function].ranges
        value = parse_number(param, minimum=-ranges[-1], maximum=ranges[-1], default=0.0)
        return next(r for r in ranges if r >= abs(value))

    def _measure(self, function: str) -> Handler:
        def handler(params: list[str]) -> str:
            self._apply_configuration(function, params)
            return self._read([])

        return handler

    def _configure(self, function: str) -> Handler:
        def handler(params: list[str]) -> None:
            self._apply_configuration(function, params)

        return handler

    def _set_range(self, function: str) -> Handler:
        def handler(params: list[str]) -> None:
            self.ranges[function] = self._parse_range(function, exactly_one(params))

        return handler

    def _range_query(self, function: str) -> Handler:
        def handler(params: list[str]) -> str:
            no_params(params)
            return format_number(self.effective_range(function))

        return handler

    def _function_query(self, params: list[str]) -> str:
        no_params(params)
        return f'"{self.function}"'

    def _func(self, params: list[str]) -> None:
        name = unquote(exactly_one(params))
        tokens = name.split(":")
        for function, pattern in _FUNCTION_PATTERNS.items():
            if _tokens_match(parse_pattern(pattern)[0], tokens):
                self._select(function)
                return
        raise ScpiError(-220, f"unknown function {name!r}")

    def _samp_count(self, params: list[str]) -> None:
        value = parse_number(exactly_one(params), minimum=1, maximum=MAX_SAMPLE_COUNT, default=1)
        if value != int(value):
            raise ScpiError(-222, f"sample count {value} is not an integer")
        self.sample_count = int(value)

    def _samp_count_query(self, params: list[str]) -> str:
        no_params(params)
        return str(self.sample_count)

    def _init(self, params: list[str]) -> None:
        no_params(params)
        self.memory = [self.reading() for _ in range(self.sample_count)]

    def _fetch(self, params: list[str]) -> str:
        no_params(params)
        if not self.memory:
            raise ScpiError(-230, "no reading in memory (send INIT or READ? first)")
        return ",".join(format_number(v) for v in self.memory)

    def _read(self, params: list[str]) -> str:
        no_params(params)
        self._init([])
        return self._fetch([])


# --- PSU -----------------------------------------------------------------------------


class ScpiPsu(ScpiInstrument):
    """A single-output bench supply with a resistive load.

    Constant voltage while ``V/R_load`` stays within the current limit, else
    constant current at the limit. Output off reads 0 V / 0 A. ``load_ohms`` may
    be ``math.inf`` (open circuit) and can be changed by a test at any time.
    """

    profile = "psu"
    model = "PSU1"
    max_voltage = 30.0
    max_current = 3.0
    default_current = 1.0
    noise_relative = 1e-4
    noise_absolute = 1e-5

    def __init__(
        self,
        *,
        seed: int = 0,
        serial: str = "TCP0002",
        error_queue_size: int = 20,
        load_ohms: float = 10.0,
    ) -> None:
        if not load_ohms > 0:
            raise ValueError(f"load resistance must be > 0 ohm, got {load_ohms}")
        self.load_ohms = load_ohms
        self.voltage = 0.0
        self.current_limit = self.default_current
        self.output = False
        super().__init__(seed=seed, serial=serial, error_queue_size=error_queue_size)

    def reset(self) -> None:
        self.voltage = 0.0
        self.current_limit = self.default_current
        self.output = False

    @property
    def regulation_mode(self) -> str:
        """``OFF``, ``CV`` or ``CC``: what the front panel would show."""
        if not self.output:
            return "OFF"
        return "CC" if self.voltage / self.load_ohms > self.current_limit else "CV"

    def output_values(self) -> tuple[float, float]:
        """Noise-free (volts, amps) at the terminals."""
        mode = self.regulation_mode
        if mode == "OFF":
            return 0.0, 0.0
        if mode == "CC":
            return self.current_limit * self.load_ohms, self.current_limit
        return self.voltage, self.voltage / self.load_ohms

    def _profile_commands(self) -> list[Command]:
        level = "[:LEVel][:IMMediate][:AMPLitude]"
        return [
            Command(f"[SOURce:]VOLTage{level}", self._volt),
            Command(f"[SOURce:]VOLTage{level}?", self._volt_query),
            Command(f"[SOURce:]CURRent{level}", self._curr),
            Command(f"[SOURce:]CURRent{level}?", self._curr_query),
            Command("OUTPut[:STATe]", self._outp),
            Command("OUTPut[:STATe]?", self._outp_query),
            Command("MEASure[:SCALar]:VOLTage[:DC]?", self._meas_volt),
            Command("MEASure[:SCALar]:CURRent[:DC]?", self._meas_curr),
            Command("APPLy", self._apply),
            Command("APPLy?", self._apply_query),
        ]

    def _parse_voltage(self, param: str) -> float:
        return parse_number(param, minimum=0.0, maximum=self.max_voltage, default=0.0)

    def _parse_current(self, param: str) -> float:
        return parse_number(
            param, minimum=0.0, maximum=self.max_current, default=self.default_current
        )

    def _volt(self, params: list[str]) -> None:
        self.voltage = self._parse_voltage(exactly_one(params))

    def _limit_query(self, params: list[str], value: float, maximum: float) -> str:
        at_most(params, 1)
        if not params:
            return format_number(value)
        word = params[0].upper()
        if word in ("MIN", "MINIMUM"):
            return format_number(0.0)
        if word in ("MAX", "MAXIMUM"):
            return format_number(maximum)
        raise ScpiError(-220, f"expected MIN or MAX, got {params[0]!r}")

    def _volt_query(self, params: list[str]) -> str:
        return self._limit_query(params, self.voltage, self.max_voltage)

    def _curr(self, params: list[str]) -> None:
        self.current_limit = self._parse_current(exactly_one(params))

    def _curr_query(self, params: list[str]) -> str:
        return self._limit_query(params, self.current_limit, self.max_current)

    def _outp(self, params: list[str]) -> None:
        self.output = parse_bool(exactly_one(params))

    def _outp_query(self, params: list[str]) -> str:
        no_params(params)
        return "1" if self.output else "0"

    def _meas_volt(self, params: list[str]) -> str:
        no_params(params)
        volts, _ = self.output_values()
        return format_number(self.noisy(volts, self.noise_relative, self.noise_absolute))

    def _meas_curr(self, params: list[str]) -> str:
        no_params(params)
        _, amps = self.output_values()
        return format_number(self.noisy(amps, self.noise_relative, self.noise_absolute))

    def _apply(self, params: list[str]) -> None:
        if not params:
            raise ScpiError(-109)
        at_most(params, 2)
        voltage = self._parse_voltage(params[0])
        current = self._parse_current(params[1]) if len(params) == 2 else self.current_limit
        self.voltage, self.current_limit = voltage, current

    def _apply_query(self, params: list[str]) -> str:
        no_params(params)
        return f'"{format_number(self.voltage)},{format_number(self.current_limit)}"'


#: Profile name -> instrument class, for command lines and test parametrisation.
PROFILES: dict[str, type[ScpiInstrument]] = {"dmm": ScpiDmm, "psu": ScpiPsu}


def make_instrument(
    profile: str, *, seed: int = 0, serial: str | None = None, error_queue_size: int = 20
) -> ScpiInstrument:
    """A fresh instrument of the named profile (``dmm`` or ``psu``); default serials differ."""
    try:
        cls = PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown SCPI profile {profile!r}; choose one of {sorted(PROFILES)}"
        ) from None
    if serial is None:
        return cls(seed=seed, error_queue_size=error_queue_size)
    return cls(seed=seed, serial=serial, error_queue_size=error_queue_size)
