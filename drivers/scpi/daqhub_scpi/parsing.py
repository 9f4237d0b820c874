"""Turning SCPI reply text into values, strictly.

Python's ``float()`` accepts ``nan``, ``inf``, ``1_0`` and surrounding blanks, so a
garbled or truncated reply could slip through as a plausible number. Every parser
here accepts only the SCPI numeric forms (NR1/NR2/NR3, IEEE 488.2 7.7.2) and raises
:class:`ReplyParseError` for anything else; the caller turns that into a
``DriverError`` naming the instrument and the command.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from daqhub.driver.lines import NUMBER

Value: TypeAlias = float | int | bool
ParseKind: TypeAlias = Literal["float", "int", "bool", "regex", "csv"]

_INTEGER = re.compile(r"[+-]?\d+")
_CSV_SPEC = re.compile(r"csv\[(0|[1-9][0-9]*)\]")
#: The ``parse`` key of a user-defined reading, as the config schema checks it.
PARSE_SPEC_PATTERN = r"^(float|int|bool|regex|csv\[(0|[1-9][0-9]*)\])$"

# SCPI-99 vol. 1 7.2.1.5: instruments report infinities and NaN as these numbers.
_SCPI_POS_INF = 9.9e37
_SCPI_NAN = 9.91e37
_TRUE = frozenset({"1", "+1", "ON"})
_FALSE = frozenset({"0", "+0", "-0", "OFF"})
_INT64 = 2**63

#: ``SYST:ERR?`` reply: ``<code>,"<message>"`` (quotes optional: some instruments omit them).
_ERROR_ENTRY = re.compile(r'\s*([+-]?\d+)\s*,\s*(?:"(.*)"|(.*?))\s*')


class ReplyParseError(ValueError):
    """A reply that does not have the form the reading expects (garbled, truncated, wrong)."""


def parse_float(text: str) -> float:
    """An SCPI number; the SCPI encodings of +/-infinity and NaN become real inf/nan."""
    try:  # faster than matching NUMBER (float() strips blanks too), but what float() takes
        value = float("?" if "_" in text else text)  # beyond SCPI: 1_000, and nan, inf below
    except ValueError:
        raise ReplyParseError(f"{text!r} is not a number") from None
    if value == _SCPI_NAN:
        return math.nan
    if abs(value) == _SCPI_POS_INF:
        return math.copysign(math.inf, value)
    if value - value != 0.0 and "n" in text.lower():  # not finite: nan or inf spelled out
        raise ReplyParseError(f"{text!r} is not a number")
    return value


def parse_int(text: str) -> int:
    """An SCPI integer; an integral NR2/NR3 form (``+1.000000E+00``) is accepted too."""
    body = text.strip()
    if _INTEGER.fullmatch(body):
        value = int(body)
    elif NUMBER.fullmatch(body):
        as_float = float(body)
        if not as_float.is_integer():
            raise ReplyParseError(f"{text!r} is not an integer")
        value = int(as_float)
    else:
        raise ReplyParseError(f"{text!r} is not an integer")
    if not -_INT64 <= value < _INT64:
        raise ReplyParseError(f"{text!r} does not fit a 64-bit integer")
    return value


def parse_bool(text: str) -> bool:
    """An SCPI boolean: ``0``/``1`` (what instruments send) or ``OFF``/``ON``."""
    body = text.strip().upper()
    if body in _TRUE:
        return True
    if body in _FALSE:
        return False
    raise ReplyParseError(f"{text!r} is not a boolean (0, 1, OFF or ON)")


@dataclass(frozen=True)
class ReplyParser:
    """How one reading turns its reply into a value, and the dtype of that value.

    ``regex`` readings take the pattern's only group, ``csv`` readings field
    ``index`` (0-based) of a comma-separated reply; both give a float.
    """

    kind: ParseKind
    index: int = 0
    pattern: re.Pattern[str] | None = None

    @classmethod
    def from_spec(cls, parse: str = "float", regex: str | None = None) -> ReplyParser:
        """Build from a reading's ``parse`` and ``regex`` keys; ValueError says what is wrong."""
        if parse in ("float", "int", "bool"):
            if regex is not None:
                raise ValueError(f"'regex' is only used with parse = \"regex\", not {parse!r}")
            return cls(parse)  # type: ignore[arg-type]
        if parse == "regex":
            if regex is None:
                raise ValueError("parse = \"regex\" needs a 'regex' key with one group")
            try:
                compiled = re.compile(regex)
            except re.error as exc:
                raise ValueError(f"regex {regex!r} does not compile: {exc}") from None
            if compiled.groups != 1:
                raise ValueError(f"regex {regex!r} must have exactly one group (the value), "
                                 f"it has {compiled.groups}")
            return cls("regex", pattern=compiled)
        m = _CSV_SPEC.fullmatch(parse)
        if m:
            if regex is not None:
                raise ValueError(f"'regex' is only used with parse = \"regex\", not {parse!r}")
            return cls("csv", index=int(m.group(1)))
        raise ValueError(f"parse = {parse!r} is not one of float, int, bool, regex, csv[N]")

    @property
    def dtype(self) -> str:
        return {"int": "int64", "bool": "bool"}.get(self.kind, "float64")

    @property
    def spec(self) -> str:
        return f"csv[{self.index}]" if self.kind == "csv" else self.kind

    @property
    def function(self) -> Callable[[str], Value]:
        """What to call per reply: the plain parser of a float/int/bool reading (a call less)."""
        return {"float": parse_float, "int": parse_int, "bool": parse_bool}.get(self.kind, self)

    def __call__(self, text: str) -> Value:
        if self.kind != "regex" and self.kind != "csv":
            return self.function(text)
        if self.kind == "regex":
            assert self.pattern is not None
            m = self.pattern.search(text)
            if m is None or m.group(1) is None:
                raise ReplyParseError(f"{text!r} does not match regex {self.pattern.pattern!r}")
            return parse_float(m.group(1))
        fields = text.split(",")
        if len(fields) <= self.index:
            raise ReplyParseError(f"{text!r} has {len(fields)} comma-separated field(s), "
                                  f"field {self.index} (0-based) was asked for")
        return parse_float(fields[self.index])


#: The fields of an ``*IDN?`` reply, in order (IEEE 488.2 10.14): who made the instrument,
#: its model, serial number and firmware level (``0`` where the instrument has none).
IDN_FIELDS = ("manufacturer", "model", "serial", "firmware")


def parse_idn(text: str) -> dict[str, str]:
    """The fields of an ``*IDN?`` reply by name (:data:`IDN_FIELDS`), never refused: it is
    what the settings snapshot records of the instrument, and a reply of another form
    still says something. A missing field is left out; a comma past the fourth stays in
    the firmware field."""
    parts = [p.strip() for p in text.strip().split(",", len(IDN_FIELDS) - 1)]
    return {name: part for name, part in zip(IDN_FIELDS, parts, strict=False) if part}


def parse_error_entry(text: str) -> tuple[int, str]:
    """Code and message of one ``SYST:ERR?`` reply (code 0 means the queue is empty)."""
    m = _ERROR_ENTRY.fullmatch(text)
    if m is None:
        raise ReplyParseError(f"{text!r} is not an error queue entry (<code>,\"<message>\")")
    message = m.group(2) if m.group(2) is not None else (m.group(3) or "")
    return int(m.group(1)), message


def format_number(value: float) -> str:
    """A set-point as SCPI NRf text; refuses what an instrument cannot take."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return repr(int(value)) if isinstance(value, int) else f"{value:.10g}"
