"""The simulated Newport 1830-C spoken to in raw bytes on a manual clock (its manual's commands)."""

from __future__ import annotations

import math
import re
import statistics

import pytest

from daqhub_sims.device import ManualClock
from daqhub_sims.newport1830c import (
    AUTORANGE_TIME,
    CALIBRATION_TIME,
    SAMPLE_PERIOD,
    Newport1830C,
    silicon_responsivity,
)
from daqhub_sims.optics import malus

pytestmark = pytest.mark.timeout(10)

PARAMETER_ERROR, COMMAND_ERROR, SATURATED, OVER_RANGE = 1, 2, 4, 8
MAV, BUSY, SRQ, READ_DONE = 16, 32, 64, 128


class Meter:
    """The host side of one serial line to the simulated meter (noise off unless asked)."""

    def __init__(self, **options: str) -> None:
        options.setdefault("noise", "0")
        self.clock = ManualClock()
        self.dev = Newport1830C(options, self.clock)

    def send(self, line: str) -> None:
        """A line that must produce no reply."""
        self.dev.feed(line.encode("ascii") + b"\n")
        assert self.dev.read() == b""

    def ask(self, line: str) -> str:
        self.dev.feed(line.encode("ascii") + b"\n")
        raw = self.dev.read().decode("ascii")
        assert raw.endswith("\n") and raw.count("\n") == 1, raw
        return raw[:-1]

    def watts(self) -> float:
        return float(self.ask("D?"))

    def status(self) -> int:
        return int(self.ask("Q?"))

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)


def test_link_speed_is_9600() -> None:
    assert Newport1830C.baudrate == 9600


@pytest.mark.parametrize("terminator", [b"\n", b"\r", b"\r\n"])
def test_terminators_and_lower_case(terminator: bytes) -> None:
    meter = Meter(power="2.5e-6")
    meter.dev.feed(b"d?" + terminator + b"w?" + terminator)
    assert meter.dev.read() == b"2.5E-6\n0633\n"


def test_nothing_happens_before_the_terminator() -> None:
    meter = Meter()
    meter.dev.feed(b"D?")
    assert meter.dev.read() == b""
    assert meter.dev.next_output_in() is None
    meter.dev.feed(b"\n")
    assert meter.dev.next_output_in() == 0
    assert meter.dev.read().endswith(b"\n")


# -- readings in every unit ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("power", "text"),
    [
        ("1.234e-6", "1.234E-6"),  # range 5 (2 uW): uW with three decimals
        ("1.23e-6", "1.23E-6"),  # trailing zeros dropped
        ("5e-9", "5E-9"),  # range 3 (20 nW): "5.00" -> "5"
        ("9e-9", "9E-9"),
        ("1.1e-10", "+.11E-9"),  # range 1 (0.2 nW): below 1 nW, signed, no leading zero
        ("7.5e-10", "+.75E-9"),  # range 2 (2 nW)
        ("0.00075", "+.75E-3"),  # range 8 (2 mW)
        ("1.5e-5", "15E-6"),  # range 6 (20 uW)
        ("0", "0E-9"),
    ],
)
def test_watts_reading_follows_the_display_of_its_range(power: str, text: str) -> None:
    meter = Meter(power=power)
    assert meter.ask("U?") == "1"
    assert meter.ask("D?") == text


@pytest.mark.parametrize(
    ("range_number", "text"),
    [("1", "+.1234E-9"), ("2", "+.123E-9"), ("3", "+.12E-9"), ("4", "+.0001E-6"), ("8", "0E-3")],
)
def test_watts_resolution_follows_a_fixed_range(range_number: str, text: str) -> None:
    meter = Meter(power="1.234e-10")
    meter.send(f"R{range_number}")
    meter.wait(SAMPLE_PERIOD)
    assert meter.ask("D?") == text


def test_watts_reading_with_the_attenuator_uses_its_thousandfold_ranges() -> None:
    meter = Meter(power="1.5e-3")
    meter.send("A1")
    meter.send("R5")  # 2 mW full scale with the attenuator: mW, three decimals
    meter.wait(SAMPLE_PERIOD)
    assert meter.ask("D?") == "1.5E-3"


def test_db_dbm_and_rel_readings_and_stored_reference() -> None:
    meter = Meter(power="1e-4")
    meter.send("U2")  # dB against the power-up reference of 1 mW
    assert (meter.ask("U?"), meter.ask("D?")) == ("2", "-10.00")
    meter.send("U3")
    assert (meter.ask("U?"), meter.ask("D?")) == ("3", "-10.00")
    meter.send("U4")
    assert (meter.ask("U?"), meter.ask("D?")) == ("4", "0.1000")
    meter.send("S")
    assert meter.ask("D?") == "1.000"
    meter.dev.set_power(5e-5)
    meter.wait(SAMPLE_PERIOD)
    assert meter.ask("D?") == "0.5000"
    meter.send("U2")
    assert meter.ask("D?") == "-3.01"
    meter.send("U3")
    assert meter.ask("D?") == "-13.01"  # dBm does not use the reference
    meter.send("U1")
    assert meter.ask("D?") == "+.05E-3"  # range 7 (0.2 mW)


def test_bad_units_set_the_parameter_error_only() -> None:
    meter = Meter()
    meter.send("U5")
    meter.send("U")
    assert meter.ask("U?") == "1"
    assert meter.status() & (PARAMETER_ERROR | COMMAND_ERROR) == PARAMETER_ERROR


# -- wavelength ---------------------------------------------------------------------------


def test_wavelength_set_and_query_zero_padded() -> None:
    meter = Meter()
    assert meter.ask("W?") == "0633"
    meter.send("W800")
    assert meter.ask("W?") == "0800"
    meter.send("W0900")
    assert meter.ask("W?") == "0900"
    assert meter.status() & (PARAMETER_ERROR | COMMAND_ERROR) == 0


@pytest.mark.parametrize("line", ["Wxyz", "W", "W2000", "W-800", "W8.5e2"])
def test_bad_wavelength_is_a_silent_parameter_error(line: str) -> None:
    meter = Meter()
    meter.send(line)
    assert meter.ask("W?") == "0633"
    assert meter.status() & PARAMETER_ERROR


def test_reading_is_calibrated_with_the_set_wavelength() -> None:
    meter = Meter(power="1e-6", source_nm="633")
    assert meter.watts() == pytest.approx(1e-6)
    meter.send("W900")
    meter.wait(SAMPLE_PERIOD)
    expected = 1e-6 * silicon_responsivity(633) / silicon_responsivity(900)
    assert meter.watts() == pytest.approx(expected, rel=1e-3)
    assert meter.watts() < 1e-6  # silicon answers better at 900 nm than at 633 nm


def test_responsivity_curve_is_smooth_and_plausible_for_silicon() -> None:
    wavelengths = range(350, 1151, 10)
    curve = [silicon_responsivity(nm) for nm in wavelengths]
    assert all(r > 0 for r in curve)
    assert 850 <= max(wavelengths, key=silicon_responsivity) <= 1000
    assert 0.4 < silicon_responsivity(633) < 0.5
    assert silicon_responsivity(1100) < 0.1
    assert max(abs(b - a) for a, b in zip(curve, curve[1:], strict=False)) < 0.08  # per 10 nm


# -- ranges, over-range, saturation, auto-range ---------------------------------------------


def test_auto_range_picks_the_decade_and_r_query_gives_current_range() -> None:
    meter = Meter(power="1e-6")  # range n holds 2e-10 * 10**(n-1) W: range 5 = 2 uW
    assert meter.ask("R?") == "5"
    meter.send("R7")
    assert meter.ask("R?") == "7"


def test_over_range_and_saturation_on_a_manual_range() -> None:
    meter = Meter(power="2.1e-6")
    meter.send("R5")
    meter.wait(SAMPLE_PERIOD)
    status = meter.status()
    assert status & OVER_RANGE and not status & SATURATED
    meter.send("R3")  # full scale 2e-8: the amplifier clips at 1.1 x
    meter.wait(SAMPLE_PERIOD)
    status = meter.status()
    assert status & OVER_RANGE and status & SATURATED
    assert meter.watts() == pytest.approx(2.2e-8)
    assert meter.ask("R?") == "3"


def test_auto_range_change_is_busy_for_a_short_time() -> None:
    meter = Meter(power="1e-6")
    assert meter.ask("R?") == "5"
    meter.dev.set_power(1e-3)
    meter.wait(SAMPLE_PERIOD)
    assert meter.ask("R?") == "8"
    status = meter.status()
    assert status & BUSY
    assert status & (OVER_RANGE | SATURATED) == 0
    meter.wait(AUTORANGE_TIME + SAMPLE_PERIOD)
    assert not meter.status() & BUSY
    assert meter.watts() == pytest.approx(1e-3)
    meter.dev.set_power(3e-9)  # down again: range 3 holds 2e-8
    meter.wait(AUTORANGE_TIME + 2 * SAMPLE_PERIOD)
    assert meter.ask("R?") == "3"
    assert meter.watts() == pytest.approx(3e-9)


def test_above_the_top_range_stays_saturated_in_auto() -> None:
    meter = Meter(power="0.01")
    meter.wait(SAMPLE_PERIOD)
    assert meter.ask("R?") == "8"
    assert meter.status() & (SATURATED | OVER_RANGE) == SATURATED | OVER_RANGE


def test_r0_returns_to_auto_and_r9_is_a_parameter_error() -> None:
    meter = Meter(power="1e-6")
    meter.send("R2")
    meter.send("R9")
    assert meter.ask("R?") == "2"
    assert meter.status() & PARAMETER_ERROR
    meter.send("R0")
    meter.wait(AUTORANGE_TIME + 2 * SAMPLE_PERIOD)
    assert meter.ask("R?") == "5"


def test_attenuator_shifts_ranges_by_three_decades() -> None:
    meter = Meter(power="1e-3")
    assert meter.ask("A?") == "0"
    assert meter.ask("R?") == "8"
    meter.send("A1")
    meter.wait(AUTORANGE_TIME + 2 * SAMPLE_PERIOD)
    assert meter.ask("A?") == "1"
    assert meter.ask("R?") == "5"
    assert meter.watts() == pytest.approx(1e-3)
    meter.send("A2")
    assert meter.status() & PARAMETER_ERROR


# -- filter -------------------------------------------------------------------------------


def _spread(meter: Meter, samples: int) -> tuple[float, float]:
    """Mean and standard deviation of readings taken one full slow window apart."""
    values = []
    for _ in range(samples):
        meter.wait(16 * SAMPLE_PERIOD)
        values.append(meter.watts())
    return statistics.fmean(values), statistics.stdev(values)


def test_filter_averaging_reduces_noise() -> None:
    meter = Meter(power="1e-6", noise="0.01", seed="7")
    assert meter.ask("F?") == "3"
    fast_mean, fast = _spread(meter, 150)
    meter.send("F2")
    assert meter.ask("F?") == "2"
    medium_mean, medium = _spread(meter, 150)
    meter.send("F1")
    assert meter.ask("F?") == "1"
    slow_mean, slow = _spread(meter, 150)
    assert fast == pytest.approx(1e-8, rel=0.2)  # 1 % of 1 uW
    assert 1.5 < fast / medium < 2.6  # 4 samples: sqrt(4) = 2
    assert 3.0 < fast / slow < 5.2  # 16 samples: sqrt(16) = 4
    for mean in (fast_mean, medium_mean, slow_mean):
        assert mean == pytest.approx(1e-6, rel=0.003)
    meter.send("F4")
    assert meter.ask("F?") == "1"
    assert meter.status() & PARAMETER_ERROR


def test_same_seed_gives_the_same_readings() -> None:
    def run() -> list[str]:
        meter = Meter(power="1e-6", noise="0.01", seed="3")
        readings = []
        for _ in range(5):
            meter.wait(SAMPLE_PERIOD)
            readings.append(meter.ask("D?"))
        return readings

    first = run()
    assert first == run()
    assert len(set(first)) > 1


def test_slow_filter_settles_after_16_samples() -> None:
    meter = Meter(power="1e-6")
    meter.send("F1")  # the average restarts from the latest sample: let it fill first
    meter.wait(16 * SAMPLE_PERIOD)
    meter.dev.set_power(1.5e-6)
    meter.wait(8 * SAMPLE_PERIOD)
    assert meter.watts() == pytest.approx(1.25e-6)
    meter.wait(8 * SAMPLE_PERIOD)
    assert meter.watts() == pytest.approx(1.5e-6)


# -- hold, zero, read-done ------------------------------------------------------------------


def test_hold_freezes_the_reading_and_go_resumes() -> None:
    meter = Meter(power="1e-6")
    assert meter.ask("G?") == "1"
    meter.send("G0")
    assert meter.ask("G?") == "0"
    meter.dev.set_power(2e-6)
    meter.wait(10 * SAMPLE_PERIOD)
    assert meter.watts() == pytest.approx(1e-6)
    assert not meter.status() & READ_DONE
    meter.send("G1")
    meter.wait(SAMPLE_PERIOD)
    assert meter.status() & READ_DONE
    assert meter.watts() == pytest.approx(2e-6)
    meter.send("G2")
    assert meter.status() & PARAMETER_ERROR


def test_zero_subtracts_the_stored_reading() -> None:
    meter = Meter(power="1e-6")
    assert meter.ask("Z?") == "0"
    meter.send("Z1")
    assert meter.ask("Z?") == "1"
    assert meter.ask("D?") == "0E-6"
    meter.dev.set_power(1.8e-6)  # same range: no auto-range pause
    meter.wait(SAMPLE_PERIOD)
    assert meter.watts() == pytest.approx(0.8e-6)
    meter.send("Z0")
    assert meter.watts() == pytest.approx(1.8e-6)
    meter.send("Z1")  # a new zero takes the reading of now
    assert meter.ask("D?") == "0E-6"
    meter.send("S")
    assert meter.status() & PARAMETER_ERROR  # a zero reading cannot be a reference


def test_read_done_is_set_by_a_new_reading_and_cleared_by_d() -> None:
    meter = Meter()
    assert meter.status() & READ_DONE
    meter.ask("D?")
    assert not meter.status() & READ_DONE
    meter.wait(SAMPLE_PERIOD / 2)
    assert not meter.status() & READ_DONE
    meter.wait(SAMPLE_PERIOD / 2)
    assert meter.status() == READ_DONE


# -- status byte ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["X", "X?", "H1", "1", "?", "*IDN?"])
def test_unknown_command_is_a_silent_command_error(line: str) -> None:
    meter = Meter()
    meter.send(line)
    assert meter.status() & (COMMAND_ERROR | PARAMETER_ERROR) == COMMAND_ERROR


@pytest.mark.parametrize(
    "line", ["D", "D1", "Q", "S1", "C?", "O1", "M256", "B2", "K3", "L2", "E2", "Z2"]
)
def test_bad_argument_is_a_silent_parameter_error(line: str) -> None:
    meter = Meter()
    meter.send(line)
    assert meter.status() & (COMMAND_ERROR | PARAMETER_ERROR) == PARAMETER_ERROR


def test_c_clears_everything_but_message_available() -> None:
    meter = Meter(power="1")  # saturated on range 8
    meter.send("X")
    meter.send("R9")
    expected = PARAMETER_ERROR | COMMAND_ERROR | SATURATED | OVER_RANGE | READ_DONE
    assert meter.status() == expected
    meter.dev.feed(b"W?\nC\nQ?\n")
    assert meter.dev.read() == b"0633\n16\n"  # the unread W? reply was still there at Q?
    assert meter.status() == 0


def test_example_status_144_is_new_reading_plus_mav() -> None:
    meter = Meter()
    meter.dev.feed(b"W?\nQ?\n")
    assert meter.dev.read() == b"0633\n144\n"


def test_service_request_follows_the_enable_mask() -> None:
    meter = Meter()
    assert meter.ask("M?") == "0"
    assert not meter.status() & SRQ
    meter.send("M128")
    assert meter.ask("M?") == "128"
    assert meter.status() == READ_DONE | SRQ
    meter.send("M1")
    assert not meter.status() & SRQ
    meter.send("R9")
    assert meter.status() & SRQ


def test_calibration_is_busy_for_a_while() -> None:
    meter = Meter()
    meter.send("O")
    assert meter.status() & BUSY
    meter.wait(CALIBRATION_TIME)
    assert not meter.status() & BUSY


# -- front-panel settings and echo ----------------------------------------------------------


@pytest.mark.parametrize(
    ("letter", "default", "new"), [("B", "1", "0"), ("K", "1", "2"), ("L", "0", "1")]
)
def test_front_panel_settings(letter: str, default: str, new: str) -> None:
    meter = Meter()
    assert meter.ask(f"{letter}?") == default
    meter.send(f"{letter}{new}")
    assert meter.ask(f"{letter}?") == new
    assert meter.status() & (PARAMETER_ERROR | COMMAND_ERROR) == 0


def test_echo_mode_echoes_each_character_and_ends_replies_with_crlf() -> None:
    meter = Meter(power="1e-6")
    assert meter.ask("E?") == "0"
    meter.send("E1")  # echo starts after E1: E1 itself is not echoed
    meter.dev.feed(b"W")
    assert meter.dev.read() == b"W"  # as it arrives, before the line is complete
    meter.dev.feed(b"?")
    assert meter.dev.read() == b"?"
    meter.dev.feed(b"\r\n")  # CR LF terminator: one CR LF back, then the reply
    assert meter.dev.read() == b"\r\n0633\r\n"
    meter.dev.feed(b"U2\r")  # a set command: only its echo
    assert meter.dev.read() == b"U2\r\n"
    meter.dev.feed(b"E0\n")
    assert meter.dev.read() == b"E0\r\n"
    assert meter.ask("E?") == "0"


def test_echo_option_powers_the_meter_on_in_echo_mode() -> None:
    meter = Meter(echo="1")
    meter.dev.feed(b"E?\n")
    assert meter.dev.read() == b"E?\r\n1\r\n"
    meter.dev.feed(b"E0\n")
    assert meter.dev.read() == b"E0\r\n"
    assert meter.ask("E?") == "0"


# -- optical coupling -----------------------------------------------------------------------


def test_malus_law() -> None:
    assert malus(2.0, 0.0) == pytest.approx(2.0)
    assert malus(2.0, 60.0) == pytest.approx(0.5)
    assert malus(2.0, 100.0, offset_deg=10.0) == pytest.approx(0.0, abs=1e-15)
    assert malus(2.0, 90.0, extinction=1e-3) == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="extinction"):
        malus(1.0, 0.0, extinction=2.0)


def test_reading_follows_a_simulated_polariser_angle() -> None:
    meter = Meter()
    angle = {"deg": 0.0}
    meter.dev.set_power_source(lambda: malus(1e-3, angle["deg"], offset_deg=20.0))
    for deg in (20.0, 50.0, 65.0, 109.0):
        angle["deg"] = deg
        meter.wait(AUTORANGE_TIME + 2 * SAMPLE_PERIOD)  # room for an auto-range change
        expected = 1e-3 * math.cos(math.radians(deg - 20.0)) ** 2
        assert meter.watts() == pytest.approx(expected, rel=2e-3), deg
    meter.dev.set_power_source(None)
    meter.wait(AUTORANGE_TIME + 2 * SAMPLE_PERIOD)
    assert meter.watts() == pytest.approx(1e-6)


def test_reading_format_holds_for_noisy_readings() -> None:
    meter = Meter(power="3e-7", noise="0.05", seed="1")
    for _ in range(50):
        meter.wait(SAMPLE_PERIOD)
        text = meter.ask("D?")
        assert re.fullmatch(r"([+-]\.\d{1,3}|-?[1-9]\d*(\.\d{0,2}[1-9])?|0)E-6", text), text
        assert float(text) == pytest.approx(3e-7, rel=0.3)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="power"):
        Newport1830C({"power": "-1"}, ManualClock())
    with pytest.raises(ValueError, match="noise"):
        Newport1830C({"noise": "lots"}, ManualClock())
    with pytest.raises(ValueError, match="wavelength"):
        Newport1830C({"wavelength": "1500"}, ManualClock())


def test_polariser_option_ties_the_reading_to_an_elliptec_rotator() -> None:
    """A meter behind a polariser on a named Elliptec bus follows Malus' law."""
    from daqhub_sims import registry

    registry.reset()
    try:
        clock = ManualClock()
        bus = registry.endpoint("sim://elliptec?name=optbench&devices=0:ELL14", clock=clock)
        meter = Newport1830C({"power": "1e-3", "noise": "0", "polariser": "optbench:0",
                              "extinction": "0"}, clock=ManualClock())

        def reading() -> float:
            meter.feed(b"D?\n")
            return float(meter.read().strip())
        assert reading() == pytest.approx(1e-3, rel=1e-3)           # aligned: all light
        with bus.lock:
            bus.device.feed(b"0ma00008C00")                        # 90 deg = 35840 pulses
        clock.advance(5.0)
        with bus.lock:
            bus.device.read()                                      # the deferred PO
        meter.clock.advance(1.0)                                   # type: ignore[attr-defined]
        assert reading() < 1e-6                                    # crossed: dark
    finally:
        registry.reset()
