"""Framing, reply parsing, scaling, status codes, checked against the ELLx manual's examples."""

from __future__ import annotations

import pytest

from daqhub_elliptec import status
from daqhub_elliptec.frames import (
    BadLine,
    Command,
    Frame,
    address_of,
    from_hex32,
    hex32,
    parse_line,
    truncated,
)
from daqhub_elliptec.models import BY_NAME, Scale, parse_info
from daqhub_elliptec.router import Expectation


@pytest.mark.parametrize(("value", "text"), [
    (35840, "00008C00"), (-398, "FFFFFE72"), (10240, "00002800"), (0x1F, "0000001F"),
    (2**31 - 1, "7FFFFFFF"), (-(2**31), "80000000"),
])
def test_positions_are_signed_32_bit_upper_case_hex(value: int, text: str) -> None:
    assert hex32(value) == text
    assert from_hex32(text) == value


def test_positions_beyond_32_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="32-bit"):
        hex32(2**31)


def test_manual_command_examples_encode_with_a_trailing_cr() -> None:
    assert Command("0", "ma", hex32(35840), "PO", deferred=True).wire() == b"0ma00008C00\r"
    assert Command("0", "mr", hex32(-398), "PO", deferred=True).wire() == b"0mrFFFFFE72\r"
    assert Command("0", "ca", "A", reply_address="A").answers_from == "A"


@pytest.mark.parametrize(("given", "wire"), [(0, "0"), (9, "9"), (10, "A"), (15, "F"),
                                              ("b", "B"), ("12", "C")])
def test_addresses_accept_numbers_and_hex_characters(given: int | str, wire: str) -> None:
    assert address_of(given) == wire


@pytest.mark.parametrize("bad", [16, -1, "G", "", True])
def test_bad_addresses_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="address"):
        address_of(bad)  # type: ignore[arg-type]


def test_a_reply_line_parses_into_one_frame() -> None:
    [frame] = parse_line(b"2PO00008C00\r\n")
    assert isinstance(frame, Frame)
    assert (frame.address, frame.mnemonic, frame.data) == ("2", "PO", "00008C00")
    [gs] = parse_line(b"AGS0C\r\n")
    assert isinstance(gs, Frame) and gs.status == 0x0C and gs.address == "A"


def test_a_truncated_reply_glued_to_the_next_is_split_and_both_routed() -> None:
    head, reply = parse_line(b"1PO00000GS00\r\n")
    assert isinstance(head, BadLine) and head.address == "1" and head.reason == "truncated"
    assert isinstance(reply, Frame) and reply.text == "0GS00"


def test_a_reply_cut_to_two_bytes_does_not_swallow_the_next_modules_reply() -> None:
    """``0P`` + ``1PO0000001F`` once read as one reply of address 0 with mnemonic ``P1``."""
    head, reply = parse_line(b"0P1PO0000001F\r\n")
    assert isinstance(head, BadLine) and head.address == "0" and head.reason == "truncated"
    assert isinstance(reply, Frame) and reply.text == "1PO0000001F"


def test_a_line_of_a_mnemonic_the_driver_does_not_know_is_still_one_reply() -> None:
    [frame] = parse_line(b"0C1ABCDEF\r\n")
    assert isinstance(frame, Frame) and (frame.mnemonic, frame.data) == ("C1", "ABCDEF")


def test_noise_before_a_reply_is_reported_and_the_reply_kept() -> None:
    noise, reply = parse_line(b"\xff\x00#0PO0000001F\r\n")
    assert isinstance(noise, BadLine) and noise.address is None
    assert isinstance(reply, Frame) and reply.text == "0PO0000001F"


@pytest.mark.parametrize("raw", [b"hello\r\n", b"0PO12\r\n", b"0GSXY\r\n", b"\xff\xfe\r\n"])
def test_lines_that_are_no_reply_are_garbled(raw: bytes) -> None:
    [bad] = parse_line(raw)
    assert isinstance(bad, BadLine) and bad.reason in ("garbled", "truncated")


def test_bytes_left_without_an_end_of_line_are_a_truncated_reply_of_their_address() -> None:
    bad = truncated(b"3PO000")
    assert bad.address == "3" and bad.reason == "truncated"
    assert truncated(b"\x00\x01").address is None


def test_in_reply_of_an_ell14_from_a_hardware_log() -> None:
    [frame] = parse_line(b"2IN0E1140051720231701016800023000\r\n")
    assert isinstance(frame, Frame)
    info = parse_info(frame.data)
    assert info.model_name == "ELL14"
    assert (info.serial, info.year, info.firmware) == ("11400517", "2023", "17")
    assert (info.travel, info.pulses) == (360, 143360)
    scale = Scale.for_info(info)
    assert scale.unit == "deg"
    assert scale.to_pulses(90) == 35840
    assert scale.to_pulses(-1) == -398
    assert scale.to_units(35840) == pytest.approx(90.0)


def test_in_reply_of_an_ell6_slider_scales_to_slots() -> None:
    info = parse_info("061060005120170801001F00000000")
    assert info.model_name == "ELL6" and info.travel == 31 and info.pulses == 0
    scale = Scale.for_info(info)
    assert scale.unit == "slot"
    assert scale.slot_pulses(1) == 0x1F
    assert scale.to_units(0x1F) == 1.0
    with pytest.raises(ValueError, match="slots 0..1"):
        scale.slot_pulses(2)


def test_ell9_slots_snap_like_the_slider() -> None:
    scale = Scale(BY_NAME["ELL9"], 31.0, 4)
    assert [scale.to_units(p) for p in (0x00, 0x1E, 0x1F, 0x3D, 0x3E, 0x5D)] == [
        0, 0, 1, 1, 2, 3]
    with pytest.raises(ValueError):
        scale.slot_pulses(1.5)


def test_linear_stage_scaling_is_per_mm() -> None:
    info = parse_info("14" + "12345678" + "2021" + "05" + "01" + "003C" + "00000400")
    scale = Scale.for_info(info)
    assert info.model_name == "ELL20" and scale.unit == "mm"
    assert hex32(scale.to_pulses(10)) == "00002800"


def test_a_module_reporting_no_pulses_falls_back_to_the_documented_value() -> None:
    info = parse_info("0E" + "00000001" + "2020" + "01" + "01" + "0168" + "00000000")
    assert Scale.for_info(info).pulses_per_unit == pytest.approx(143360 / 360)


def test_in_data_that_does_not_parse_names_the_field() -> None:
    with pytest.raises(ValueError, match="travel"):
        parse_info("0E" + "00000001" + "2020" + "01" + "01" + "ZZZZ" + "00000000")


@pytest.mark.parametrize("code", range(0x01, 0x0E))
def test_every_documented_status_code_has_the_manual_message(code: int) -> None:
    assert status.message(code) == status.MESSAGES[code]
    assert status.code_text(code) == f"{code:02X}"


def test_reserved_status_codes_say_so() -> None:
    assert "reserved" in status.message(0x42)


def _frame(text: str) -> Frame:
    [f] = parse_line(text.encode() + b"\r\n")
    assert isinstance(f, Frame)
    return f


def test_a_move_waits_through_busy_and_stale_acknowledgements() -> None:
    expect = Expectation(Command("0", "ma", "00008C00", "PO", deferred=True))
    assert not expect.matches(_frame("0GS09"))
    assert not expect.matches(_frame("0GS00"))
    assert expect.seen_busy
    assert expect.matches(_frame("0PO00008C00"))
    assert expect.matches(_frame("0GS0C"))


def test_a_query_takes_busy_and_errors_but_not_stale_acknowledgements() -> None:
    expect = Expectation(Command("0", "gp", reply="PO"))
    assert expect.matches(_frame("0GS09"))
    assert expect.matches(_frame("0GS03"))
    assert not expect.matches(_frame("0GS00"))
    assert not expect.matches(_frame("0GV64"))
    assert expect.matches(_frame("0PO00000000"))
    setter = Expectation(Command("0", "sv", "32"))
    assert setter.matches(_frame("0GS00"))
