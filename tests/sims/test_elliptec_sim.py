"""The Elliptec bus simulator against Thorlabs' ELLx protocol, in raw bytes on a manual clock."""

from __future__ import annotations

import pytest

from daqhub_sims.device import ManualClock
from daqhub_sims.elliptec import ElliptecBus

pytestmark = pytest.mark.timeout(10)

ELL14_PULSES_PER_S = 430.0 * 143360 / 360  # spec max speed at 100 % velocity


class Bus:
    """A bus on a manual clock, spoken to the way a host does: bytes in, bytes out."""

    def __init__(self, devices: str = "0:ELL14", **options: str) -> None:
        self.clock = ManualClock()
        self.dev = ElliptecBus({"devices": devices, **options}, self.clock)

    def ask(self, command: bytes) -> bytes:
        self.dev.feed(command)
        return self.dev.read()

    def advance(self, seconds: float) -> bytes:
        self.clock.advance(seconds)
        return self.dev.read()

    def finish(self) -> bytes:
        """Run the clock to the next scheduled output and return it."""
        due = self.dev.next_output_in()
        assert due is not None, "nothing scheduled"
        return self.advance(due)


def fields(reply: bytes) -> dict[str, str]:
    """Split an IN reply by the manual's layout."""
    assert reply.endswith(b"\r\n")
    body = reply[3:-2].decode()
    assert len(body) == 30, body
    return {"type": body[0:2], "serial": body[2:10], "year": body[10:14], "fw": body[14:16],
            "hw": body[16:18], "travel": body[18:22], "pulses": body[22:30]}


# -- identification -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "type_code", "travel", "pulses"),
    [("ELL14", "0E", "0168", "00023000"), ("ELL9", "09", "001F", "00000000"),
     ("ELL20", "14", "003C", "00000400"), ("ELL6", "06", "001F", "00000000")],
)
def test_in_reply_has_the_manual_layout(
    model: str, type_code: str, travel: str, pulses: str
) -> None:
    bus = Bus(f"2:{model}")
    reply = bus.ask(b"2in")
    assert reply.startswith(b"2IN")
    f = fields(reply)
    assert (f["type"], f["travel"], f["pulses"]) == (type_code, travel, pulses)
    assert f["year"].isdigit()


def test_each_address_answers_only_for_itself() -> None:
    bus = Bus("0:ELL14,1:ELL9,2:ELL20,3:ELL6")
    assert fields(bus.ask(b"1in"))["type"] == "09"
    assert fields(bus.ask(b"3in"))["type"] == "06"
    assert bus.ask(b"7in") == b""  # nobody there


def test_motor_info_replies_and_two_motor_check() -> None:
    bus = Bus("0:ELL14,1:ELL6")
    assert bus.ask(b"0i1") == b"0I1100428FFFFFFFF00BD008B\r\n"
    assert bus.ask(b"0i2").startswith(b"0I2")
    assert bus.ask(b"1i2") == b"1GS03\r\n"  # ELL6 has one motor


def test_setting_motor_periods() -> None:
    bus = Bus()
    assert bus.ask(b"0f1804E") == b"0GS00\r\n"
    assert bus.ask(b"0i1")[-10:-2] == b"004E008B"
    assert bus.ask(b"0b18FFF") == b"0GS00\r\n"  # factory value
    assert bus.ask(b"0f1704E") == b"0GS04\r\n"  # top nibble must be 8


# -- status and errors ----------------------------------------------------------------------
def test_unknown_mnemonic_gives_gs03_sticky_until_read() -> None:
    bus = Bus()
    assert bus.ask(b"0xx") == b"0GS03\r\n"
    assert bus.ask(b"0in").startswith(b"0IN")  # the error does not block other commands
    assert bus.ask(b"0gs") == b"0GS03\r\n"
    assert bus.ask(b"0gs") == b"0GS00\r\n"


def test_upper_case_mnemonic_is_not_a_command() -> None:
    assert Bus().ask(b"0IN") == b"0GS03\r\n"


def test_malformed_hex_gives_gs04() -> None:
    bus = Bus()
    assert bus.ask(b"0ma0000XYZ1") == b"0GS04\r\n"
    assert bus.ask(b"0gs") == b"0GS04\r\n"
    assert bus.ask(b"0gp") == b"0PO00000000\r\n"


def test_lower_case_hex_rejected_unless_enabled() -> None:
    assert Bus().ask(b"0sv3c") == b"0GS04\r\n"
    assert Bus(lowercase_hex="1").ask(b"0sv3c") == b"0GS00\r\n"


def test_linear_stage_refuses_moves_beyond_travel_with_gs0c() -> None:
    bus = Bus("0:ELL20")
    assert bus.ask(b"0ma0000F001") == b"0GS0C\r\n"  # 60 mm * 1024 = 0xF000 is the end
    assert bus.ask(b"0mrFFFFFFFF") == b"0GS0C\r\n"  # below 0
    assert bus.ask(b"0gs") == b"0GS0C\r\n"
    assert bus.ask(b"0ma0000F000") == b""
    assert bus.finish() == b"0PO0000F000\r\n"


# -- receiver framing ---------------------------------------------------------------------
def test_lone_cr_or_lf_discards_a_partial_packet() -> None:
    bus = Bus()
    assert bus.ask(b"0ma0000\r") == b""
    assert bus.ask(b"0in").startswith(b"0IN")
    assert bus.ask(b"0ma\n0gp") == b"0PO00000000\r\n"
    assert bus.ask(b"0gs") == b"0GS00\r\n"  # a reset is not an error


def test_trailing_cr_as_sent_by_some_drivers_works() -> None:
    bus = Bus()
    assert bus.ask(b"0in\r").startswith(b"0IN")
    assert bus.ask(b"0sv32\r") == b"0GS00\r\n"


def test_packets_split_across_writes_and_joined_in_one_write() -> None:
    bus = Bus("0:ELL14,1:ELL9")
    assert bus.ask(b"0g") == b""
    assert bus.ask(b"v") == b"0GV64\r\n"
    assert bus.ask(b"0gv1gp") == b"0GV64\r\n1PO00000000\r\n"


def test_noise_before_a_packet_is_skipped() -> None:
    assert Bus().ask(b"zz\x000gp") == b"0PO00000000\r\n"


def test_partial_packet_is_dropped_after_2s_and_sets_status_01() -> None:
    bus = Bus()
    bus.ask(b"0ma0000")
    bus.clock.advance(2.1)
    assert bus.ask(b"8C00") == b""  # too late: the move never starts
    assert bus.dev.next_output_in() is None
    assert bus.ask(b"\r0gs") == b"0GS01\r\n"
    assert bus.ask(b"0gs") == b"0GS00\r\n"


def test_pause_under_2s_between_bytes_is_fine() -> None:
    bus = Bus()
    bus.ask(b"0ma0000")
    bus.clock.advance(1.9)
    assert bus.ask(b"8C00") == b""
    assert bus.finish() == b"0PO00008C00\r\n"


# -- motion ---------------------------------------------------------------------------------
def test_move_answers_po_when_it_ends_at_the_modelled_speed() -> None:
    bus = Bus()
    assert bus.ask(b"0ma00008C00") == b""  # 90 degrees
    duration = 0x8C00 / ELL14_PULSES_PER_S
    assert bus.dev.next_output_in() == pytest.approx(duration)
    assert bus.advance(duration * 0.99) == b""
    assert bus.advance(duration * 0.02) == b"0PO00008C00\r\n"
    assert bus.ask(b"0gp") == b"0PO00008C00\r\n"


def test_busy_unit_answers_gs09_while_others_stay_usable() -> None:
    bus = Bus("0:ELL14,1:ELL9")
    bus.ask(b"0ma00008C00")
    bus.clock.advance(0.05)
    assert bus.ask(b"0gp") == b"0GS09\r\n"
    assert bus.ask(b"0gs") == b"0GS09\r\n"
    assert bus.ask(b"0ma00000000") == b"0GS09\r\n"  # refused, not queued
    assert bus.ask(b"1ma0000001F") == b""
    assert bus.finish() == b"0PO00008C00\r\n"
    assert bus.finish() == b"1PO0000001F\r\n"  # both moved at the same time
    assert bus.ask(b"0gs") == b"0GS00\r\n"  # busy is not sticky


def test_velocity_scales_move_time() -> None:
    bus = Bus()
    assert bus.ask(b"0gv") == b"0GV64\r\n"
    assert bus.ask(b"0sv32") == b"0GS00\r\n"
    assert bus.ask(b"0gv") == b"0GV32\r\n"
    assert bus.ask(b"0sv65") == b"0GS04\r\n"  # above 100 %
    bus.ask(b"0ma00008C00")
    assert bus.dev.next_output_in() == pytest.approx(2 * 0x8C00 / ELL14_PULSES_PER_S)


def test_speed_scale_option_shortens_moves() -> None:
    bus = Bus(speed_scale="10")
    bus.ask(b"0ma00008C00")
    assert bus.dev.next_output_in() == pytest.approx(0x8C00 / ELL14_PULSES_PER_S / 10)


def test_relative_move_is_signed_and_rotary_positions_wrap() -> None:
    bus = Bus()
    bus.ask(b"0mrFFFFFE72")  # -1 degree
    assert bus.finish() == f"0PO{143360 - 398:08X}\r\n".encode()
    assert bus.dev.next_output_in() is None


def test_home_rotary_by_direction_and_linear() -> None:
    bus = Bus("0:ELL14,1:ELL20")
    bus.ask(b"0ma00008C00")
    bus.finish()
    assert bus.ask(b"0ho2") == b"0GS04\r\n"
    bus.ask(b"0ho1")  # counter-clockwise: back through 90 degrees
    assert bus.dev.next_output_in() == pytest.approx(0x8C00 / ELL14_PULSES_PER_S)
    assert bus.finish() == b"0PO00000000\r\n"
    bus.ask(b"1ma00002800")
    bus.finish()
    bus.ask(b"1ho0")
    assert bus.finish() == b"1PO00000000\r\n"


def test_jog_step_get_set_and_jogging() -> None:
    bus = Bus()
    assert bus.ask(b"0gj") == f"0GJ{143360 // 36:08X}\r\n".encode()
    assert bus.ask(b"0sj00001000") == b"0GS00\r\n"
    assert bus.ask(b"0gj") == b"0GJ00001000\r\n"
    bus.ask(b"0fw")
    assert bus.finish() == b"0PO00001000\r\n"
    bus.ask(b"0bw")
    assert bus.finish() == b"0PO00000000\r\n"


def test_home_offset_get_set() -> None:
    bus = Bus()
    assert bus.ask(b"0so00000100") == b"0GS00\r\n"
    assert bus.ask(b"0go") == b"0HO00000100\r\n"


def test_continuous_jog_runs_until_stop() -> None:
    bus = Bus()
    bus.ask(b"0sj00000000")
    assert bus.ask(b"0fw") == b""
    assert bus.dev.next_output_in() is None  # no end in sight
    bus.clock.advance(0.1)
    assert bus.ask(b"0gp") == b"0GS09\r\n"
    expected = round(ELL14_PULSES_PER_S * 0.1)
    assert bus.ask(b"0st") == f"0PO{expected:08X}\r\n0GS00\r\n".encode()
    assert bus.ask(b"0gp") == f"0PO{expected:08X}\r\n".encode()


def test_stop_does_not_abort_a_bounded_move_and_is_gs03_on_sliders() -> None:
    bus = Bus("0:ELL14,1:ELL9")
    assert bus.ask(b"0st") == b"0GS00\r\n"
    bus.ask(b"0ma00008C00")
    assert bus.ask(b"0st") == b"0GS09\r\n"
    assert bus.finish() == b"0PO00008C00\r\n"
    assert bus.ask(b"1st") == b"1GS03\r\n"


def test_optimize_motors_is_busy_then_done_and_stop_aborts_it() -> None:
    bus = Bus("0:ELL14,1:ELL9", speed_scale="60")
    assert bus.ask(b"0om") == b"0GS09\r\n"
    assert bus.ask(b"0in") == b"0GS09\r\n"
    assert bus.finish() == b"0GS00\r\n"
    assert bus.ask(b"0cm") == b"0GS09\r\n"
    assert bus.ask(b"0st") == b"0GS00\r\n"
    assert bus.dev.next_output_in() is None  # the aborted routine's GS00 never comes
    assert bus.ask(b"1om") == b"1GS03\r\n"


def test_mechanical_timeout_fault_reports_02() -> None:
    bus = Bus(stall="0", drive_timeout="0.5")
    bus.ask(b"0ma00008C00")
    assert bus.advance(0.49) == b""
    assert bus.advance(0.02) == b"0GS02\r\n"
    assert bus.ask(b"0gp") == b"0PO00000000\r\n"
    assert bus.ask(b"0gs") == b"0GS02\r\n"
    bus.dev.unit("0").stalled = False
    bus.ask(b"0ma00008C00")
    assert bus.finish() == b"0PO00008C00\r\n"


def test_interim_busy_option() -> None:
    bus = Bus(interim_busy="1")
    assert bus.ask(b"0ma00008C00") == b"0GS09\r\n"
    assert bus.finish() == b"0PO00008C00\r\n"


# -- sliders --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "slot"),
    [(0x00, 0x00), (0x1E, 0x00), (0x1F, 0x1F), (0x3D, 0x1F), (0x3E, 0x3E), (0x5C, 0x3E),
     (0x5D, 0x5D), (0x7B, 0x5D)],
)
def test_ell9_snaps_to_slots(target: int, slot: int) -> None:
    bus = Bus("0:ELL9")
    reply = bus.ask(f"0ma{target:08X}".encode()) or bus.finish()  # no travel: answered at once
    assert reply == f"0PO{slot:08X}\r\n".encode()


def test_ell9_beyond_last_slot_is_out_of_range() -> None:
    bus = Bus("0:ELL9")
    assert bus.ask(b"0ma0000007C") == b"0GS0C\r\n"


def test_ell6_forward_and_backward_select_its_two_slots() -> None:
    bus = Bus("0:ELL6")
    bus.ask(b"0fw")
    assert bus.finish() == b"0PO0000001F\r\n"
    assert bus.ask(b"0fw") == b"0PO0000001F\r\n"  # already at the last slot
    bus.ask(b"0bw")
    assert bus.finish() == b"0PO00000000\r\n"
    assert bus.ask(b"0ma0000003E") == b"0GS0C\r\n"


def test_ell9_jogs_slot_by_slot() -> None:
    bus = Bus("0:ELL9")
    bus.ask(b"0fw")
    assert bus.finish() == b"0PO0000001F\r\n"
    bus.ask(b"0fw")
    assert bus.finish() == b"0PO0000003E\r\n"


@pytest.mark.parametrize("model", ["ELL6", "ELL6B", "ELL9"])
def test_home_on_a_slider_moves_to_slot_0_and_answers_po_when_there(model: str) -> None:
    # The protocol reference: "Model `ho` on sliders as a move to slot 0" answering `0PO00000000`.
    bus = Bus(f"0:{model}")
    bus.ask(b"0fw")
    assert bus.finish() == b"0PO0000001F\r\n"
    assert bus.ask(b"0ho0") == b""  # a move answers once, when motion ends
    assert bus.ask(b"0gp") == b"0GS09\r\n"  # busy while it travels
    assert bus.finish() == b"0PO00000000\r\n"
    assert bus.ask(b"0gp") == b"0PO00000000\r\n"
    assert bus.ask(b"0ho1") == b"0PO00000000\r\n"  # already at slot 0: no travel, same answer


def test_home_from_the_last_ell9_slot_takes_the_travel_time() -> None:
    bus = Bus("0:ELL9")
    bus.ask(b"0ma0000005D")
    assert bus.finish() == b"0PO0000005D\r\n"
    bus.ask(b"0ho0")
    assert bus.advance(0.5) == b""  # 0x5D units at ~100 units/s are still under way
    assert bus.finish() == b"0PO00000000\r\n"


# -- every model of the reference ------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "type_code", "travel", "pulses"),
    [("ELL6", "06", "001F", "00000000"), ("ELL6B", "06", "001F", "00000000"),
     ("ELL9", "09", "001F", "00000000"), ("ELL14", "0E", "0168", "00023000"),
     ("ELL15", "0F", "000B", "000003E8"), ("ELL16", "10", "0168", "00010000"),
     ("ELL17", "11", "001C", "00000400"), ("ELL18", "12", "0168", "00040000"),
     ("ELL20", "14", "003C", "00000400"), ("ELL21", "15", "0168", "00010000")],
)
def test_every_model_of_the_scaling_table_identifies_itself(
    model: str, type_code: str, travel: str, pulses: str
) -> None:
    f = fields(Bus(f"3:{model}").ask(b"3in"))
    assert (f["type"], f["travel"], f["pulses"]) == (type_code, travel, pulses)


def test_ell17_linear_travel_is_28_mm_at_1024_pulses_per_mm() -> None:
    bus = Bus("0:ELL17")
    assert bus.ask(b"0ma00007001") == b"0GS0C\r\n"  # 28 mm + 1 pulse
    bus.ask(b"0ma00007000")
    assert bus.finish() == b"0PO00007000\r\n"


def test_ell15_iris_moves_over_its_travel_refuses_clean_and_takes_auto_home() -> None:
    bus = Bus("0:ELL15")
    bus.ask(b"0ma00001388")  # 5 mm at 1000 pulses/mm
    assert bus.finish() == b"0PO00001388\r\n"
    assert bus.ask(b"0ma00002AF9") == b"0GS0C\r\n"  # beyond 11 mm
    bus.ask(b"0gs")
    assert bus.ask(b"0cm") == b"0GS03\r\n"  # "clean mechanics (not ELL15)"
    bus.ask(b"0gs")
    assert bus.ask(b"0ah1") == b"0GS00\r\n"
    assert bus.ask(b"0ah2") == b"0GS04\r\n"


@pytest.mark.parametrize("model", ["ELL14", "ELL20", "ELL9"])
def test_auto_home_is_ell15_only(model: str) -> None:
    assert Bus(f"0:{model}").ask(b"0ah1") == b"0GS03\r\n"


@pytest.mark.parametrize(("model", "continuous"), [("ELL16", True), ("ELL21", True),
                                                   ("ELL18", False), ("ELL17", False)])
def test_stop_ends_continuous_jog_only_on_the_models_that_have_it(
    model: str, continuous: bool
) -> None:
    bus = Bus(f"0:{model}")
    bus.ask(b"0sj00000000")
    bus.ask(b"0fw")
    if continuous:
        assert bus.advance(0.1) == b""
        assert bus.ask(b"0st").endswith(b"0GS00\r\n")
    else:
        assert bus.ask(b"0st") == b"0GS03\r\n"


# -- addressing -----------------------------------------------------------------------------
def test_change_address_replies_from_the_new_address_and_save_persists_it() -> None:
    bus = Bus("0:ELL14,1:ELL9")
    assert bus.ask(b"0ca5") == b"5GS00\r\n"
    assert bus.ask(b"0in") == b""
    assert fields(bus.ask(b"5in"))["type"] == "0E"
    bus.dev.power_cycle()
    assert bus.ask(b"0in").startswith(b"0IN")  # not saved: back at 0
    bus.ask(b"0ca5")
    assert bus.ask(b"5us") == b"5GS00\r\n"
    bus.dev.power_cycle()
    assert bus.ask(b"5in").startswith(b"5IN")
    assert bus.ask(b"0cax") == b""  # 'x' is no address... and no packet start either


def test_bad_new_address_is_gs04() -> None:
    bus = Bus()
    assert bus.ask(b"0ca\x7f") == b"0GS04\r\n"


def test_group_address_lasts_one_operation_and_replies_by_priority() -> None:
    bus = Bus("0:ELL14,1:ELL14")
    serial0 = fields(bus.ask(b"0in"))["serial"]
    serial1 = fields(bus.ask(b"1in"))["serial"]
    assert bus.ask(b"0ga1") == b"1GS00\r\n"
    both = bus.ask(b"1in").split(b"\r\n")[:-1]
    assert [fields(r + b"\r\n")["serial"] for r in both] == [serial0, serial1]
    assert all(r.startswith(b"1IN") for r in both)
    assert fields(bus.ask(b"1in"))["serial"] == serial1  # unit 0 is back at its own address
    assert fields(bus.ask(b"0in"))["serial"] == serial0


def test_group_move_moves_both_units() -> None:
    bus = Bus("0:ELL14,1:ELL14")
    bus.ask(b"0ga1")
    assert bus.ask(b"1ma00008C00") == b""
    assert bus.finish() == b"1PO00008C00\r\n1PO00008C00\r\n"
    assert bus.ask(b"0gp") == b"0PO00008C00\r\n"


def test_two_units_on_one_address_collide_on_the_wire() -> None:
    bus = Bus("0:ELL14,0:ELL9")
    assert bus.ask(b"0gs") == b"0GS00\r\n"  # identical replies survive the wired-AND
    reply = bus.ask(b"0in")
    assert reply.startswith(b"0")
    assert reply not in (Bus("0:ELL14").ask(b"0in"), Bus("0:ELL9").ask(b"0in"))


def test_isolated_unit_ignores_the_bus_until_the_deadline() -> None:
    bus = Bus("0:ELL14,1:ELL9")
    assert bus.ask(b"0is01") == b""
    assert bus.ask(b"0in") == b""
    assert bus.ask(b"1in").startswith(b"1IN")
    bus.clock.advance(61)
    assert bus.ask(b"0in").startswith(b"0IN")
    assert bus.ask(b"0gs") == b"0GS06\r\n"


# -- construction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [({"devices": "0:ELL99"}, "ELL14"), ({"devices": "G:ELL14"}, "address"),
     ({"devices": "0:ELL14", "speed": "2"}, "speed_scale"), ({"devices": ""}, "empty"),
     ({"devices": "0:ELL14", "speed_scale": "0"}, "> 0")],
)
def test_bad_options_are_explained(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ElliptecBus(options, ManualClock())
