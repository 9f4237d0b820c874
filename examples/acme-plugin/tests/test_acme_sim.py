"""The simulated TC-1 against the README's protocol section, byte for byte."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import serial
from daqhub_sims.device import ManualClock

from daqhub_acme.sim import AcmeTempSim


def device(**options: str) -> tuple[AcmeTempSim, ManualClock]:
    clock = ManualClock()
    return AcmeTempSim(options, clock), clock


def ask(dev: AcmeTempSim, line: bytes) -> bytes:
    dev.feed(line)
    return dev.read()


def test_power_on_state() -> None:
    dev, _ = device(serial="XY42")
    assert ask(dev, b"*IDN?\r") == b"ACME,TC-1,XY42,1.0\r\n"
    assert ask(dev, b"TEMP?\r") == b"+293.150\r\n"
    assert ask(dev, b"SETP?\r") == b"+293.150\r\n"
    assert ask(dev, b"HEAT?\r") == b"0.0\r\n"
    assert dev.next_output_in() is None


def test_temperature_approaches_the_setpoint_exponentially() -> None:
    dev, clock = device(tau="10", ambient="300")
    assert ask(dev, b"SETP 100\r") == b"OK\r\n"
    assert ask(dev, b"SETP?\r") == b"+100.000\r\n"
    assert ask(dev, b"TEMP?\r") == b"+300.000\r\n"
    clock.advance(10.0)
    expected = 100 + 200 * math.exp(-1)
    assert ask(dev, b"TEMP?\r") == f"{expected:+.3f}\r\n".encode()
    # A new setpoint starts from where the temperature is now, not from where it started.
    assert ask(dev, b"SETP 400\r") == b"OK\r\n"
    clock.advance(10.0)
    assert ask(dev, b"TEMP?\r") == f"{400 + (expected - 400) * math.exp(-1):+.3f}\r\n".encode()
    clock.advance(1000.0)
    assert ask(dev, b"TEMP?\r") == b"+400.000\r\n"


def test_heater_drives_towards_the_setpoint_and_holds_it() -> None:
    dev, clock = device(tau="1")
    ask(dev, b"SETP 303.15\r")
    assert ask(dev, b"HEAT?\r") == b"100.0\r\n"  # 5 %/K hold + 100 % error term, clipped
    clock.advance(100.0)
    assert ask(dev, b"HEAT?\r") == b"5.0\r\n"  # only the hold term is left
    ask(dev, b"SETP 77\r")
    assert ask(dev, b"HEAT?\r") == b"0.0\r\n"  # below ambient: the cooler works, not the heater


def test_tau_zero_jumps_to_the_setpoint() -> None:
    dev, _ = device(tau="0")
    ask(dev, b"SETP 4.2\r")
    assert ask(dev, b"TEMP?\r") == b"+4.200\r\n"


@pytest.mark.parametrize(("line", "reply"), [
    (b"FOO\r", b"ERR 1 UNKNOWN COMMAND\r\n"),
    (b"TEMP\r", b"ERR 1 UNKNOWN COMMAND\r\n"),
    (b"\xff\xfe?\r", b"ERR 1 UNKNOWN COMMAND\r\n"),
    (b"SETP\r", b"ERR 2 BAD ARGUMENT\r\n"),
    (b"SETP abc\r", b"ERR 2 BAD ARGUMENT\r\n"),
    (b"SETP 3e2\r", b"ERR 2 BAD ARGUMENT\r\n"),
    (b"SETP 300 1\r", b"ERR 2 BAD ARGUMENT\r\n"),
    (b"TEMP? 1\r", b"ERR 2 BAD ARGUMENT\r\n"),
    (b"SETP 500.001\r", b"ERR 3 OUT OF RANGE\r\n"),
    (b"SETP 2.999\r", b"ERR 3 OUT OF RANGE\r\n"),
    (b"SETP -10\r", b"ERR 3 OUT OF RANGE\r\n"),
    (b"SETP " + b"1" * 28 + b"\r", b"ERR 4 LINE TOO LONG\r\n"),
])
def test_errors_reply_and_change_nothing(line: bytes, reply: bytes) -> None:
    dev, _ = device()
    assert ask(dev, line) == reply
    assert ask(dev, b"SETP?\r") == b"+293.150\r\n"


@pytest.mark.parametrize(("line", "reply"), [
    (b"setp 300\r", b"OK\r\n"),            # case-insensitive
    (b"  SETP   +300.0004 \r", b"OK\r\n"),  # spaces; kept to 0.001 K
    (b"SETP 77.\r", b"OK\r\n"),
    (b"SETP .5e\r", b"ERR 2 BAD ARGUMENT\r\n"),
    (b"SETP 500\r\n", b"OK\r\n"),          # LF after CR ignored
    (b"SETP 3.000\r", b"OK\r\n"),           # the range includes its ends
    (b"\r", b""),                          # an empty line gets no reply
    (b"   \r", b""),
])
def test_framing(line: bytes, reply: bytes) -> None:
    dev, _ = device()
    assert ask(dev, line) == reply


def test_thirty_two_characters_are_accepted_thirty_three_are_not() -> None:
    dev, _ = device()
    assert ask(dev, b"SETP " + b"0" * 24 + b"300\r") == b"OK\r\n"          # 32
    assert ask(dev, b"SETP " + b"0" * 25 + b"300\r") == b"ERR 4 LINE TOO LONG\r\n"  # 33
    assert ask(dev, b"SETP?\r") == b"+300.000\r\n"


def test_replies_come_in_command_order() -> None:
    dev, _ = device(serial="Q1")
    assert ask(dev, b"*IDN?\rFOO\rSETP 10\rSETP?\r") == (
        b"ACME,TC-1,Q1,1.0\r\nERR 1 UNKNOWN COMMAND\r\nOK\r\n+10.000\r\n")
    assert ask(dev, b"SETP") == b""  # nothing until the CR
    assert ask(dev, b"?\r") == b"+10.000\r\n"


def test_noise_is_repeatable_with_a_seed() -> None:
    def readings(seed: str) -> list[bytes]:
        dev, _ = device(noise="0.05", seed=seed)
        return [ask(dev, b"TEMP?\r") for _ in range(5)]

    assert readings("7") == readings("7")
    assert readings("7") != readings("8")
    assert len(set(readings("7"))) > 1


@pytest.mark.parametrize("options", [{"tau": "-1"}, {"noise": "x"}, {"serial": "A-1"},
                                     {"seed": "1.5"}, {"ambient": "0"}])
def test_bad_options_are_refused(options: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="TC-1 option"):
        AcmeTempSim(options, ManualClock())


def test_reachable_as_a_sim_url(sim_url: Callable[..., str]) -> None:
    """The entry point ``daqhub_sims.models`` makes ``sim://acmetemp`` a serial line."""
    with serial.serial_for_url(sim_url("acmetemp", serial="URL1"), timeout=1.0) as line:
        line.write(b"*IDN?\r")
        assert line.read_until(b"\r\n") == b"ACME,TC-1,URL1,1.0\r\n"


def test_an_option_it_does_not_declare_is_refused() -> None:
    """``sim://acmetemp?ambeint=80`` served the defaults: a typo must not."""
    assert [o.name for o in AcmeTempSim.OPTIONS] == ["serial", "ambient", "tau", "noise", "seed"]
    with pytest.raises(ValueError, match=r"takes no option 'ambeint'; its options: ambient, "
                                         r"noise, seed, serial, tau"):
        AcmeTempSim({"ambeint": "80"}, ManualClock())
