"""Reply parsers: what a reading turns a reply into, and which replies it refuses."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daqhub_scpi.parsing import (
    ReplyParseError,
    ReplyParser,
    format_number,
    parse_bool,
    parse_error_entry,
    parse_float,
    parse_idn,
    parse_int,
)


@pytest.mark.parametrize("text, value", [
    ("+1.000012E+00", 1.000012), ("-5", -5.0), (".5", 0.5), ("7.", 7.0), (" 3e-3\r", 3e-3),
])
def test_float_accepts_scpi_numbers(text: str, value: float) -> None:
    assert parse_float(text) == value


def test_float_maps_scpi_infinity_and_nan() -> None:
    assert parse_float("+9.9E+37") == math.inf
    assert parse_float("-9.9E37") == -math.inf
    assert math.isnan(parse_float("9.91E37"))


@pytest.mark.parametrize("text", [
    "", "nan", "inf", "-Infinity", " NaN ", "+INF", "1_000", "+1.00E", "+1.000012E+",
    "#~?GARBAGE", "1.0,2.0", "1 V", "--1",
])
def test_float_refuses_what_is_not_one_number(text: str) -> None:
    # (a reply truncated to "+1.0000" is a valid number: only its missing terminator tells,
    # which the protocol checks; see the TCP fault tests)
    with pytest.raises(ReplyParseError):
        parse_float(text)


@given(st.floats(min_value=-1e37, max_value=1e37))  # (9.9E37 and 9.91E37 are inf and nan)
def test_float_round_trips_instrument_formats(x: float) -> None:
    assert parse_float(f"{x:+.6E}") == float(f"{x:+.6E}")
    assert parse_float(format_number(x)) == float(format_number(x))


def test_int_and_bool() -> None:
    assert parse_int("+12") == 12
    assert parse_int("+1.000000E+00") == 1
    with pytest.raises(ReplyParseError):
        parse_int("1.5")
    with pytest.raises(ReplyParseError):
        parse_int("1" * 30)
    assert parse_bool("1") is True and parse_bool("off") is False
    with pytest.raises(ReplyParseError):
        parse_bool("2")


def test_regex_and_csv_readings() -> None:
    regex = ReplyParser.from_spec("regex", r"T=(\S+)K")
    assert regex("T=293.5K") == 293.5
    assert regex.dtype == "float64"
    with pytest.raises(ReplyParseError, match="does not match"):
        regex("T=?")
    csv = ReplyParser.from_spec("csv[2]")
    assert csv("1,2,+3.5E+00") == 3.5
    with pytest.raises(ReplyParseError, match="field 2"):
        csv("1,2")
    assert ReplyParser.from_spec("int").dtype == "int64"
    assert ReplyParser.from_spec("bool").dtype == "bool"


@pytest.mark.parametrize("spec, reply", [("float", "+1.5E+00"), ("int", "+7"), ("bool", "1"),
                                         ("csv[1]", "1,2.5"), ("regex", "T=3K")])
def test_a_polls_parse_function_reads_as_the_parser_does(spec: str, reply: str) -> None:
    parser = ReplyParser.from_spec(spec, r"T=(\S+)K" if spec == "regex" else None)
    assert parser.function(reply) == parser(reply)
    with pytest.raises(ReplyParseError):
        parser.function("garbage")


@pytest.mark.parametrize("parse, regex, message", [
    ("regex", None, "needs a 'regex'"),
    ("regex", "no group", "exactly one group"),
    ("regex", "(a)(b)", "exactly one group"),
    ("regex", "(", "does not compile"),
    ("float", "(x)", "only used with"),
    ("csv[-1]", None, "not one of"),
    ("decimal", None, "not one of"),
])
def test_bad_reading_specs_are_explained(parse: str, regex: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplyParser.from_spec(parse, regex)


@pytest.mark.parametrize("text, entry", [
    ('+0,"No error"', (0, "No error")),
    ('0,"No error"', (0, "No error")),
    ('-113,"Undefined header"', (-113, "Undefined header")),
    ('-222,"Data out of range;VOLT 31"', (-222, "Data out of range;VOLT 31")),
    ("-350,Queue overflow", (-350, "Queue overflow")),
])
def test_error_entries(text: str, entry: tuple[int, str]) -> None:
    assert parse_error_entry(text) == entry


@pytest.mark.parametrize("text", ["", "No error", "+1.000012E+00", "#~?GARBAGE,@@,!!", '-11'])
def test_error_entry_refuses_other_replies(text: str) -> None:
    with pytest.raises(ReplyParseError):
        parse_error_entry(text)


def test_format_number_refuses_non_finite() -> None:
    assert format_number(5) == "5"
    assert format_number(0.25) == "0.25"
    for bad in (math.nan, math.inf, True, "5"):
        with pytest.raises(ValueError):
            format_number(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, identity", [
    ("SIM,DMM1,VISA0005,1.0", {"manufacturer": "SIM", "model": "DMM1", "serial": "VISA0005",
                               "firmware": "1.0"}),
    (" KEYSIGHT TECHNOLOGIES, 34465A , MY1234 , A.02.14-02.40-02.14-00.49-02-01\r",
     {"manufacturer": "KEYSIGHT TECHNOLOGIES", "model": "34465A", "serial": "MY1234",
      "firmware": "A.02.14-02.40-02.14-00.49-02-01"}),
    ("Acme,PS-3,0,1.2,build 7", {"manufacturer": "Acme", "model": "PS-3", "serial": "0",
                                 "firmware": "1.2,build 7"}),
    ("Acme,PS-3", {"manufacturer": "Acme", "model": "PS-3"}),
    ("", {}),
])
def test_idn_fields_by_name(text: str, identity: dict[str, str]) -> None:
    assert parse_idn(text) == identity
