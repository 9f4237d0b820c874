"""The simulated ESP300 spoken to in raw bytes, on a manual clock (its manual's commands)."""

from __future__ import annotations

import pytest

from daqhub_sims.device import ManualClock
from daqhub_sims.esp300 import ESP300, error_message

pytestmark = pytest.mark.timeout(10)


class Link:
    """The host side of one serial line to the simulator."""

    def __init__(self, **options: str) -> None:
        self.clock = ManualClock()
        self.dev = ESP300(options, self.clock)

    def send(self, line: str) -> None:
        """A line that must produce no reply."""
        self.dev.feed(line.encode("ascii") + b"\r")
        assert self.dev.read() == b""

    def ask(self, line: str) -> list[str]:
        self.dev.feed(line.encode("ascii") + b"\r")
        raw = self.dev.read().decode("ascii")
        assert raw.endswith("\r\n")
        return raw.split("\r\n")[:-1]

    def one(self, line: str) -> str:
        (reply,) = self.ask(line)
        return reply

    def num(self, line: str) -> float:
        return float(self.one(line))

    def errors(self) -> list[int]:
        codes = []
        while (code := int(self.one("TE?"))) != 0:
            codes.append(code)
        return codes

    def at(self, t: float) -> None:
        self.clock.advance(t - self.clock.now())


@pytest.fixture
def esp() -> Link:
    link = Link()
    link.send("1MO;2MO;3MO")
    return link


# -- framing -----------------------------------------------------------------------------


def test_link_speed_is_19200() -> None:
    assert ESP300.baudrate == 19200


def test_nothing_runs_before_cr_and_lf_is_ignored(esp: Link) -> None:
    esp.dev.feed(b"1TP?")
    assert esp.dev.read() == b""
    assert esp.dev.next_output_in() is None
    esp.dev.feed(b"\r\n\n")
    assert esp.dev.read() == b"0\r\n"


def test_bytes_can_arrive_one_at_a_time(esp: Link) -> None:
    for byte in b"1VA?;2VA?\r":
        esp.dev.feed(bytes([byte]))
    assert esp.dev.read() == b"10\r\n10\r\n"


def test_blanks_and_case_are_ignored(esp: Link) -> None:
    esp.send(" 2 va 4 . 5 ; 2 Ac 8")
    assert esp.ask("2va?;2 AC ?") == ["4.5", "8"]


def test_multi_command_line_gives_one_reply_per_query_and_empty_commands_are_skipped(
    esp: Link,
) -> None:
    assert esp.ask(";1MO?;;2VA?;3SN?;") == ["1", "10", "2"]


def test_80_character_line_runs_81_is_dropped_with_error_6() -> None:
    link = Link()
    ok = ("1MO;" + "1VA9" + " " * 72)[:80]
    assert len(ok) == 80
    link.send(ok)
    assert link.ask("1MO?;1VA?") == ["1", "9"]
    assert link.errors() == []
    too_long = "2MO;" + " " * 77
    assert len(too_long) == 81
    link.send(too_long)
    assert link.one("2MO?") == "0"
    assert link.errors() == [6]


def test_only_queries_reply(esp: Link) -> None:
    esp.send("1PA1;1VA5;XX;1SL-3")
    assert esp.dev.read() == b""


# -- identity ------------------------------------------------------------------------------


def test_identity_queries(esp: Link) -> None:
    assert esp.one("*IDN?").startswith("ESP300")
    assert esp.one("VE?").startswith("ESP300")
    assert esp.one("1ID?")
    assert esp.one("2ID?") != esp.one("1ID?")


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("XX", 6),
        ("1XY5", 6),
        ("1.5PA3", 6),
        ("PA1", 37),
        ("TP?", 37),
        ("4PA1", 9),
        ("0MO", 9),
        ("9TP?", 9),
        ("1PA", 38),
        ("1PAabc", 7),
        ("1PA?", 7),
        ("1VA", 38),
        ("1VA1.2.3", 7),
        ("1MV", 38),
        ("1MV*", 7),
        ("1SN12", 101),
        ("1SN2.5", 101),
        ("2OR9", 201),
        ("1VA0", 101),
        ("1VA-1", 101),
        ("1VA25", 110),
        ("1AC250", 111),
        ("1AG250", 111),
        ("1PA26", 106),
        ("1PA-26", 107),
        ("1PR30", 106),
    ],
)
def test_bad_commands_log_the_manuals_error_code(esp: Link, line: str, code: int) -> None:
    esp.send(line)
    assert esp.errors() == [code]
    assert esp.one("1MD?") == "1"


def test_missing_and_nonexistent_axis_with_fewer_axes() -> None:
    link = Link(axes="2")
    link.send("3MO;MO")
    assert link.errors() == [9, 37]


def test_tb_reports_code_timestamp_in_400us_ticks_and_message() -> None:
    link = Link()
    link.at(1.0)
    link.send("8PA12.3")
    link.at(2.5)
    assert link.one("TB?") == "9, 2500, AXIS NUMBER OUT OF RANGE"
    assert link.one("TB?") == "0, 6250, NO ERROR DETECTED"
    assert link.one("TE?") == "0"


def test_tb_messages_for_axis_errors() -> None:
    link = Link()
    link.send("2PA1;2OR;1VA")
    assert link.ask("TB?;TB?;TB?") == [
        "213, 0, MOTOR NOT ENABLED",
        "220, 0, HOMING ABORTED",
        "38, 0, COMMAND PARAMETER MISSING",
    ]


def test_error_messages_cover_the_listed_codes() -> None:
    for code in [*range(0, 2), 4, *range(6, 10), *range(13, 24), *range(25, 36), *range(37, 42)]:
        assert error_message(code).isupper(), code
    for axis_code in [*range(0, 12), 13, *range(15, 33)]:
        message = error_message(300 + axis_code)
        assert message == error_message(100 + axis_code)
        assert message.isupper() and message != "UNKNOWN ERROR", axis_code
    assert error_message(306) == "POSITIVE SOFTWARE LIMIT DETECTED"
    assert error_message(113) == "MOTOR NOT ENABLED"


def test_error_fifo_keeps_the_10_most_recent_and_each_read_pops_one() -> None:
    link = Link()
    for i in range(12):
        link.at(i * 0.001)  # 2.5 ticks apart: timestamps tell the entries apart
        link.send("XX")
    link.at(1.0)
    replies = [link.one("TB?") for _ in range(11)]
    stamps = [int(r.split(", ")[1]) for r in replies[:10]]
    assert stamps == [int(i * 2.5) for i in range(2, 12)]  # the first two were pushed out
    assert all(r.startswith("6, ") for r in replies[:10])
    assert replies[10] == "0, 2500, NO ERROR DETECTED"


def test_te_and_tb_share_the_fifo() -> None:
    link = Link()
    link.send("XX;PA1;9PA1")
    assert link.one("TE?") == "6"
    assert link.one("TB?").startswith("37, ")
    assert link.one("TE?") == "9"
    assert link.one("TE?") == "0"


# -- motors and parameters -----------------------------------------------------------------


def test_motor_power_and_move_with_motor_off() -> None:
    link = Link()
    assert link.ask("1MO?;2MO?;3MO?") == ["0", "0", "0"]
    link.send("1PA1;1MV+")
    assert link.errors() == [113, 113]
    assert link.num("1TP?") == 0
    link.send("1MO")
    assert link.one("1MO?") == "1"
    link.send("1MF")
    assert link.one("1MO?") == "0"


@pytest.mark.parametrize(
    ("name", "default", "new"),
    [
        ("VA", 10, 5.5), ("AC", 40, 12), ("AG", 40, 13), ("VU", 20, 15), ("AU", 200, 150),
        ("AE", 400, 300), ("JK", 4000, 3000), ("VB", 0, 0.5), ("JH", 10, 3), ("JW", 1, 0.2),
        ("OH", 2, 1.5), ("FE", 1, 0.25), ("BA", 0, 0.01), ("SL", -25, -10), ("SR", 25, 12),
        ("SH", 0, 3),
    ],
)
def test_parameters_set_and_query(esp: Link, name: str, default: float, new: float) -> None:
    assert esp.num(f"2{name}?") == default
    esp.send(f"2{name}{new}")
    assert esp.num(f"2{name}?") == new
    assert esp.num(f"1{name}?") == default
    assert esp.errors() == []


def test_speed_scale_option_scales_speeds_and_accelerations() -> None:
    link = Link(speed_scale="2")
    assert link.ask("1VA?;1AC?;1VU?;1AU?") == ["20", "160", "40", "800"]


def test_units_change_the_numbers_not_the_motion(esp: Link) -> None:
    esp.send("1PA5")
    esp.at(10.0)
    assert esp.one("1SN?") == "2"
    assert esp.num("1SU?") == pytest.approx(1e-4)
    esp.send("1SN3")
    assert esp.ask("1SN?;1TP?;1VA?;1SR?") == ["3", "5000", "10000", "25000"]
    assert esp.num("1SU?") == pytest.approx(0.1)
    esp.send("1SN4")
    assert esp.num("1TP?") == pytest.approx(5 / 25.4)
    esp.send("1SN0")
    assert esp.num("1TP?") == pytest.approx(50000)
    assert esp.num("1SU?") == 1
    assert esp.num("2TP?") == 0
    assert esp.one("2SN?") == "2"


def test_units_option_sets_power_on_units() -> None:
    link = Link(units="7")
    assert link.ask("1SN?;2SN?;3SN?") == ["7", "7", "7"]
    link.send("1SN9")
    assert link.num("1VA?") == pytest.approx(10 * 3.141592653589793 / 180)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="axes"):
        ESP300({"axes": "4"}, ManualClock())
    with pytest.raises(ValueError, match="speed_scale"):
        ESP300({"speed_scale": "fast"}, ManualClock())


# -- trapezoidal motion -----------------------------------------------------------------


def test_trapezoid_positions_and_motion_done_at_computed_times(esp: Link) -> None:
    # VA 2, AC 4, AG 8, 3 units: accelerate 0.5 s (0.5), cruise 1.125 s (2.25), decelerate
    # 0.25 s (0.25); done at 1.875 s.
    esp.send("1VA2;1AC4;1AG8;1PA3")
    assert esp.one("1MD?") == "0"
    esp.at(0.25)
    assert esp.num("1TP?") == pytest.approx(0.5 * 4 * 0.25**2)
    assert esp.num("1DP?") == pytest.approx(0.125)
    esp.at(1.0)
    assert esp.num("1TP?") == pytest.approx(0.5 + 2 * 0.5)
    esp.at(1.75)
    assert esp.num("1TP?") == pytest.approx(0.5 + 2.25 + 2 * 0.125 - 0.5 * 8 * 0.125**2)
    esp.at(1.874)
    assert esp.one("1MD?") == "0"
    esp.at(1.875 + 1e-9)
    assert esp.ask("1MD?;1TP?;1DP?") == ["1", "3", "3"]


def test_short_move_is_a_triangle(esp: Link) -> None:
    # 0.1 with AC = AG = 40: peak speed 2 after 0.05 s, done at 0.1 s.
    esp.send("2PA0.1")
    esp.at(0.05)
    assert esp.num("2TP?") == pytest.approx(0.05)
    esp.at(0.099)
    assert esp.one("2MD?") == "0"
    esp.at(0.1 + 1e-9)
    assert esp.ask("2MD?;2TP?") == ["1", "0.1"]


def test_relative_moves_add_up_and_negative_moves_work(esp: Link) -> None:
    esp.send("3PR2;3PR-0.5")  # second PR is relative to the running move's target
    esp.at(5)
    assert esp.num("3TP?") == pytest.approx(1.5)
    esp.send("3PA-4")
    esp.at(10)
    assert esp.num("3TP?") == pytest.approx(-4)


def test_new_target_during_motion_replans_from_current_speed(esp: Link) -> None:
    esp.send("1PA10")
    esp.at(0.5)  # cruising at 10 from 1.25 to 3.75
    esp.send("1PA2")  # behind us now: decelerate (1.25 more), then come back
    esp.at(0.75)
    assert esp.num("1TP?") == pytest.approx(5.0)
    esp.at(10)
    assert esp.ask("1MD?;1TP?") == ["1", "2"]
    assert esp.errors() == []


def test_axes_move_independently(esp: Link) -> None:
    esp.send("1PA1;2PA-1")
    esp.at(0.1)
    assert esp.num("1TP?") == pytest.approx(0.2)
    assert esp.num("2TP?") == pytest.approx(-0.2)
    assert esp.num("3TP?") == 0


def test_software_limits_refuse_a_move_beyond(esp: Link) -> None:
    esp.send("1SL-2;1SR3;1PA3.5;1PA-2.5;1PR4")
    assert esp.errors() == [106, 107, 106]
    assert esp.one("1MD?") == "1"
    esp.send("1PA3")
    esp.at(5)
    assert esp.num("1TP?") == 3
    assert esp.ask("1SL?;1SR?") == ["-2", "3"]


# -- stop, abort, jog ------------------------------------------------------------------------


def test_stop_decelerates_with_ag(esp: Link) -> None:
    esp.send("1AG20;1PA20")
    esp.at(1.0)  # cruising at 10 since 0.25 s: position 1.25 + 7.5
    esp.send("1ST")
    assert esp.one("1MD?") == "0"
    esp.at(1.25)
    assert esp.num("1TP?") == pytest.approx(8.75 + 10 * 0.25 - 10 * 0.25**2)
    esp.at(1.5 + 1e-9)
    assert esp.ask("1MD?;1TP?") == ["1", "11.25"]
    assert esp.errors() == []


def test_stop_without_axis_stops_all(esp: Link) -> None:
    esp.send("1PA20;2PA-20")
    esp.at(1.0)
    esp.send("ST")
    esp.at(1.25 + 1e-9)
    assert esp.ask("1MD?;2MD?;1TP?;2TP?") == ["1", "1", "10", "-10"]


def test_abort_stops_every_axis_at_once(esp: Link) -> None:
    esp.send("1PA20;2PA-20;3PA1")
    esp.at(1.0)
    esp.send("AB")
    assert esp.ask("1MD?;2MD?;3MD?;1TP?;2TP?;3TP?") == ["1", "1", "1", "8.75", "-8.75", "1"]
    esp.at(2)
    assert esp.num("1TP?") == 8.75
    assert esp.ask("1MO?;2MO?") == ["1", "1"]


def test_motor_off_during_motion_stops_the_axis(esp: Link) -> None:
    esp.send("1PA20")
    esp.at(1.0)
    esp.send("1MF")
    esp.at(2.0)
    assert esp.ask("1MD?;1TP?;1MO?") == ["1", "8.75", "0"]


def test_jog_runs_until_stopped(esp: Link) -> None:
    esp.send("2MV-")
    assert esp.one("2MV?") == "0"
    esp.at(1.0)
    assert esp.num("2TP?") == pytest.approx(-8.75)
    esp.send("2ST")
    esp.at(1.25 + 1e-9)
    assert esp.ask("2MV?;2MD?;2TP?") == ["1", "1", "-10"]
    assert esp.errors() == []


def test_jog_stops_at_the_software_limit_and_logs_it(esp: Link) -> None:
    esp.send("1SR5;1MV+")
    esp.at(0.75 + 1e-9)  # 5 at VA 10, AC 40, AG 40
    assert esp.ask("1MD?;1TP?") == ["1", "5"]
    assert esp.one("TB?") == "106, 1875, POSITIVE SOFTWARE LIMIT DETECTED"
    esp.send("1MV+")
    assert esp.errors() == [106]


# -- homing -----------------------------------------------------------------------------


def test_home_search_moves_to_the_switch_at_home_speed_then_sets_sh() -> None:
    link = Link(home="2")
    link.send("1MO;1SH1.5;1OR2")
    # 2 at OH 2 with AC = AG = 40: 0.05 s up, 0.95 s cruise, 0.05 s down = 1.05 s
    assert link.one("1MD?") == "0"
    link.at(0.5)
    assert link.num("1TP?") == pytest.approx(0.05 + 2 * 0.45)
    link.at(1.049)
    assert link.one("1MD?") == "0"
    link.at(1.05 + 1e-9)
    assert link.ask("1MD?;1TP?;1DP?") == ["1", "1.5", "1.5"]
    assert link.errors() == []


def test_home_without_mode_uses_om_and_defaults_to_position_zero_preset() -> None:
    link = Link(home="-1")
    assert link.one("1OM?") == "1"
    link.send("1MO;1PA3")
    link.at(5)
    link.send("1OR")
    link.at(10)
    assert link.ask("1MD?;1TP?") == ["1", "0"]
    # the switch is now position 0: a new search from elsewhere comes back to it
    link.send("1PA2;1WS;1OM2;1OR;1WS")
    link.at(20)
    assert link.num("1TP?") == 0
    assert link.one("1OM?") == "2"


@pytest.mark.parametrize(("mode", "passes"), [(3, 27.0), (5, 27.0), (4, -23.0), (6, -23.0)])
def test_home_on_a_limit_switch(mode: int, passes: float) -> None:
    link = Link(home="2")  # hardware limits at 2 +/- 25
    link.send(f"1MO;1OR{mode}")
    link.at(1.0)
    position = link.num("1TP?")
    assert 0 < position * passes  # moving towards the chosen limit
    link.at(30)
    assert link.ask("1MD?;1TP?") == ["1", "0"]
    assert link.errors() == []


def test_home_mode_0_goes_to_count_zero() -> None:
    link = Link(home="2")
    link.send("1MO;1PA4;1WS;1DH1;1OR0")  # encoder count 0 is now 3 units back
    link.at(20)
    assert link.num("1TP?") == 0
    link.send("1PA1;1WS")
    link.at(30)
    link.send("1OR1")
    link.at(40)
    assert link.num("1TP?") == 0


def test_home_with_motor_off_is_aborted() -> None:
    link = Link()
    link.send("3OR")
    assert link.one("TB?") == "320, 0, HOMING ABORTED"
    assert link.one("3MD?") == "1"


def test_commands_refused_during_homing_and_stop_aborts_it() -> None:
    link = Link(home="10")
    link.send("1MO;1OR")
    link.at(1.0)
    link.send("1PA0;1OR;1DH;1MV+")
    assert link.errors() == [130, 130, 130, 130]
    link.send("1ST")
    assert link.errors() == [120]
    link.at(2)
    assert link.one("1MD?") == "1"
    assert 1 < link.num("1TP?") < 10


def test_define_home(esp: Link) -> None:
    esp.send("2DH5")
    assert esp.num("2TP?") == 5
    esp.send("2PA6")
    esp.at(5)
    esp.send("2DH")
    assert esp.num("2TP?") == 0
    esp.send("2PA-1;2DH3")
    assert esp.errors() == [27]


# -- WS ordering -------------------------------------------------------------------------


def test_ws_holds_later_commands_until_the_axis_stops(esp: Link) -> None:
    esp.dev.feed(b"1PA5;1WS;1TP?;1MD?\r")
    assert esp.dev.read() == b""
    assert esp.dev.next_output_in() == pytest.approx(0.75)
    esp.dev.feed(b"2TP?\r")  # a later line waits behind the WS too
    esp.at(0.7)
    assert esp.dev.read() == b""
    esp.at(0.75 + 1e-9)
    assert esp.dev.next_output_in() == 0
    assert esp.dev.read() == b"5\r\n1\r\n0\r\n"


def test_ws_delay_and_commands_run_at_their_due_time(esp: Link) -> None:
    # 1 done 0.75 + 250 ms -> 2 starts at 1.0; a 1-unit triangle at AC = AG = 40 takes
    # 2 * sqrt(40) / 40 s; then 3 does the same, then 100 ms, then the query.
    triangle = 2 * 40**0.5 / 40
    reply_at = 1.0 + 2 * triangle + 0.1
    esp.send("1PA5;1WS250;2PA1;2WS;3PA1;3WS100;1TP?")
    esp.at(0.9)
    assert esp.dev.next_output_in() == pytest.approx(0.1)  # the next thing that can happen
    esp.at(reply_at - 1e-4)
    assert esp.dev.read() == b""
    assert esp.dev.next_output_in() == pytest.approx(1e-4)
    esp.at(reply_at + 1e-9)
    assert esp.dev.read() == b"5\r\n"
    assert esp.ask("2TP?;3TP?;2MD?;3MD?") == ["1", "1", "1", "1"]


def test_ws_timing_of_the_next_motion(esp: Link) -> None:
    esp.send("1PA5;1WS;2PA1")
    esp.at(0.75 + 0.1)  # axis 2 started exactly when axis 1 stopped, 0.1 s ago
    assert esp.num("2TP?") == pytest.approx(0.5 * 40 * 0.1**2)


def test_wt_waits_a_fixed_time(esp: Link) -> None:
    esp.dev.feed(b"WT200;1VA?\r")
    assert esp.dev.next_output_in() == pytest.approx(0.2)
    esp.at(0.2)
    assert esp.dev.read() == b"10\r\n"


def test_ws_on_idle_axis_does_not_wait(esp: Link) -> None:
    assert esp.ask("3WS;3TP?") == ["0"]
    assert esp.ask("WS;1TP?") == ["0"]


# -- reset ----------------------------------------------------------------------------------


def test_reset_returns_to_power_on_state(esp: Link) -> None:
    esp.send("1VA3;1DH4;XX")
    esp.at(1.0)
    esp.send("RS;SM")
    assert esp.ask("1VA?;1TP?;1MO?;TE?") == ["10", "0", "0", "0"]
    assert esp.one("TB?") == "0, 0, NO ERROR DETECTED"


def test_position_queries_reply_without_question_mark(esp: Link) -> None:
    assert esp.ask("1TP;1DP;1MD") == ["0", "0", "1"]


def test_move_past_a_hardware_limit_stops_there() -> None:
    link = Link()  # hardware limits at -25 and +25 from the power-on position
    link.send("1MO;1DH-20")  # the positive limit is now at 5, the software limit still at 25
    link.send("1PA10")
    link.at(5)
    assert link.ask("1MD?;1TP?") == ["1", "5"]
    assert link.one("TE?") == "104"


# -- commands independent clients send (manual command reference) -------------------------


def test_move_to_travel_limit_runs_to_the_hardware_limit_past_software_limits(
    esp: Link,
) -> None:
    esp.send("1SR5;1MT+")
    assert esp.one("1MT?") == "0"  # motion in progress
    esp.at(30)
    assert esp.ask("1MT?;1MD?;1TP?") == ["1", "1", "25"]  # default travel 50: limits +/-25
    esp.send("1MT-")
    esp.at(60)
    assert esp.num("1TP?") == -25
    assert esp.errors() == []  # reaching the switch is what was asked


@pytest.mark.parametrize(("line", "code"), [("1MT", 38), ("1MT5", 7), ("MT+", 37), ("4MT+", 9)])
def test_move_to_travel_limit_bad_arguments(esp: Link, line: str, code: int) -> None:
    esp.send(line)
    assert esp.errors() == [code]


def test_move_to_travel_limit_with_motor_off_is_x13() -> None:
    link = Link()
    link.send("2MT+")
    assert link.errors() == [213]
    assert link.one("2MD?") == "1"


def test_wait_for_position_holds_later_commands_until_the_axis_gets_there(esp: Link) -> None:
    # 1PA5 at VA 10, AC = AG = 40: position 1.25 is reached after 0.25 s of acceleration.
    esp.dev.feed(b"1PA5;1WP1.25;1TP?\r")
    assert esp.dev.read() == b""
    assert esp.dev.next_output_in() == pytest.approx(0.25)
    esp.at(0.2)
    assert esp.dev.read() == b""
    esp.at(0.25 + 1e-9)
    assert float(esp.dev.read()) == pytest.approx(1.25)
    assert esp.errors() == []


def test_wait_for_position_on_the_way_back_and_when_never_reached(esp: Link) -> None:
    esp.send("1PA5;1WS")
    esp.at(1)
    esp.dev.feed(b"1PA3;1WP4;1TP?\r")  # passing 4 downwards
    esp.at(1.3)
    assert float(esp.dev.read()) == pytest.approx(4, abs=1e-6)
    esp.at(2)
    esp.dev.feed(b"1WP100;1TP?\r")  # at rest: the wait ends at once
    assert esp.dev.read() == b"3\r\n"


@pytest.mark.parametrize(("line", "code"), [("1WP", 38), ("1WPx", 7), ("WP1", 37)])
def test_wait_for_position_bad_arguments(esp: Link, line: str, code: int) -> None:
    esp.send(line)
    assert esp.errors() == [code]


def test_controller_status_character(esp: Link) -> None:
    # bit 6 always, bit 4 a motor on, bits 0-2 axes in motion (the manual's "[P" example)
    assert esp.one("TS") == "P"
    esp.send("1PA5;3PA1")
    assert esp.one("TS") == chr(0x40 | 0x10 | 0b101)
    off = Link()
    assert off.one("TS") == "@"


def test_controller_activity_character(esp: Link) -> None:
    esp.send("1PA5")
    assert esp.one("TX") == "@"
    esp.dev.feed(b"1WS;TX\r")  # TX waits behind WS like any command
    assert esp.dev.read() == b""
    esp.at(1)
    assert esp.dev.read() == b"@\r\n"


def test_hardware_status_registers() -> None:
    link = Link(home="2")  # hardware limits at -23 and +27
    assert link.one("PH") == "0H, 0H"  # every axis below its home switch
    link.send("1MO;1MT+;2MO;2OR1")
    link.at(30)
    assert link.one("PH") == "201H, 3H"  # axis 1 + limit, axis 2 at its switch (index)
    link.send("1MT-")
    link.at(60)
    assert link.one("PH") == "208H, 2H"


def test_system_configuration_lists_the_axes() -> None:
    assert Link().one("ZU") == "7H"
    assert Link(axes="2").one("ZU") == "3H"


@pytest.mark.parametrize(
    ("name", "default", "new"),
    [("KP", "1", "0.25"), ("KI", "0", "1000"), ("KD", "0", "12.5"), ("KS", "1", "0.5"),
     ("QM", "1", "2"), ("TJ", "1", "2")],
)
def test_servo_and_motion_settings_set_and_query(
    esp: Link, name: str, default: str, new: str
) -> None:
    assert esp.one(f"2{name}?") == default
    esp.send(f"2{name}{new}")
    assert esp.one(f"2{name}?") == new
    assert esp.one(f"1{name}?") == default
    assert esp.errors() == []


@pytest.mark.parametrize("name", ["ZB", "ZH"])
def test_configuration_registers_take_and_answer_hex(esp: Link, name: str) -> None:
    assert esp.one(f"1{name}?") == "5H"
    esp.send(f"1{name}24H")
    assert esp.one(f"1{name}?") == "24H"
    esp.send(f"1{name}16")
    assert esp.one(f"1{name}?") == "10H"
    assert esp.errors() == []


@pytest.mark.parametrize(
    ("line", "code"),
    [("1KP-1", 101), ("2KS1.5", 201), ("1KP", 38), ("1KDx", 7), ("KP1", 37), ("1QM5", 101),
     ("1QM1.5", 101), ("3TJ0", 301), ("3TJ7", 301), ("1ZB10000H", 101), ("1ZHxyz", 7),
     ("SA0", 7), ("SA32", 7), ("SA", 38), ("TSX", 7), ("PH1", 7), ("ZU2", 7)],
)
def test_bad_arguments_of_the_new_commands_log_the_manuals_codes(
    esp: Link, line: str, code: int
) -> None:
    esp.send(line)
    assert esp.errors() == [code]


def test_motor_type_and_trajectory_mode_cannot_change_during_motion(esp: Link) -> None:
    esp.send("1PA5;1QM2;1TJ2")
    assert esp.errors() == [27, 27]


def test_motor_type_undefined_refuses_motor_on() -> None:
    link = Link()
    link.send("1QM0;1MO")
    assert link.errors() == [100]
    assert link.one("1MO?") == "0"


def test_jog_trajectory_mode_refuses_moves_and_home_search(esp: Link) -> None:
    esp.send("1TJ3;1PA1;1PR1;1MT+;1OR1")
    assert esp.errors() == [132, 132, 132, 127]
    esp.send("1TJ1;1PA1")
    assert esp.errors() == []


def test_device_address(esp: Link) -> None:
    assert esp.one("SA?") == "1"
    esp.send("SA12")
    assert esp.one("SA?") == "12"


def test_define_home_query_answers_the_last_defined_value(esp: Link) -> None:
    assert esp.one("1DH?") == "0"
    esp.send("1DH2.5")
    assert esp.one("1DH?") == "2.5"
    assert esp.num("1TP?") == 2.5
    assert esp.errors() == []
