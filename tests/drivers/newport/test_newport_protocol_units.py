"""Protocol pieces of both Newport instruments against scripted lines (no simulator).

What is checked is what a user relies on: numbers are read exactly as the instruments print
them, anything else is refused with a DriverError naming instrument and command, and ESP300
errors reach the axis they belong to.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from fakeline import FakeLine
from polling import wait_until

from daqhub.driver import DriverTimeoutError, lines
from daqhub.driver.lines import read_line
from daqhub.instrument import DriverError
from daqhub.specs import InstrumentContext
from daqhub_newport import esp300_protocol as esp
from daqhub_newport import meter1830c_protocol as pm
from daqhub_newport.esp300 import Esp300Axis
from daqhub_newport.esp300_axis import ErrorRouter
from daqhub_newport.meter1830c import Meter1830c
from daqhub_newport.meter1830c_protocol import parse_reading

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("text, value", [
    ("5.32", 5.32), ("-15.24", -15.24), ("+.75E-9", 0.75e-9), ("1.23E-6", 1.23e-6),
    ("5E-9", 5e-9), ("0", 0.0), ("0800", 800.0), ("1.", 1.0),
])
def test_numbers_as_the_instruments_print_them(text: str, value: float) -> None:
    assert parse_reading(text, "dev", "D?") == value


@pytest.mark.parametrize("text", ["nan", "inf", "1_000", "", "5.3.2", "0x10", "1e", "E-9",
                                  "5 3"])
def test_anything_else_is_a_garbled_reply(text: str) -> None:
    with pytest.raises(DriverError) as info:
        parse_reading(text, "dev", "D?")
    assert (info.value.instrument_id, info.value.command, info.value.code) == ("dev", "D?",
                                                                              "garbled")


@pytest.mark.parametrize("raw, code", [
    (b"5.3", "truncated"), (b"\xff\xfe5\r\n", "garbled"), (b"5\x003\r\n", "garbled"),
])
def test_truncated_and_garbled_lines(raw: bytes, code: str) -> None:
    line = FakeLine(lambda cmd: raw)
    line.write(b"1TP?\r")
    with pytest.raises(DriverError) as info:
        read_line(line, "stage", "1TP?", b"\r\n")
    assert info.value.code == code
    assert "stage" in str(info.value) and "1TP?" in str(info.value)


def test_silence_is_none_so_the_caller_can_ask_why() -> None:
    line = FakeLine(lambda cmd: None)
    line.write(b"1TP?\r")
    assert read_line(line, "stage", "1TP?", b"\r\n") is None


# ---------------------------------------------------------------------------- ESP300
@pytest.mark.parametrize("text, code, axis, message", [
    ("0, 451322, NO ERROR DETECTED", 0, 0, "NO ERROR DETECTED"),
    ("108, 12, MOTOR / STAGE NOT CONNECTED", 108, 1, "MOTOR / STAGE NOT CONNECTED"),
    ("  7 ,  3 , PARAMETER OUT OF RANGE", 7, 0, "PARAMETER OUT OF RANGE"),
    ("306", 306, 3, "POSITIVE SOFTWARE LIMIT DETECTED"),  # TE?-style bare code
])
def test_tb_replies(text: str, code: int, axis: int, message: str) -> None:
    err = esp.parse_error(text, "stage")
    assert (err.code, err.axis, err.message) == (code, axis, message)


def test_tb_garbage_is_refused() -> None:
    with pytest.raises(DriverError, match="garbled"):
        esp.parse_error("NO ERROR", "stage")


def fifo(entries: list[str]) -> FakeLine:
    queue = list(entries)
    return FakeLine(lambda cmd: ((queue.pop(0) if queue else "0, 1, NO ERROR DETECTED")
                                 + "\r\n").encode() if cmd == "TB?" else None)


def test_drain_pops_until_no_error() -> None:
    line = fifo(["7, 10, PARAMETER OUT OF RANGE", "213, 11, MOTOR NOT ENABLED"])
    errors = esp.drain_errors(line, "stage")
    assert [e.code for e in errors] == [7, 213]
    assert line.sent == ["TB?"] * 3


def test_drain_is_bounded_by_the_fifo_depth() -> None:
    line = FakeLine(lambda cmd: b"6, 1, COMMAND DOES NOT EXIST\r\n")
    with pytest.raises(DriverError, match="did not empty"):
        esp.drain_errors(line, "stage")
    assert len(line.sent) == esp.FIFO_DEPTH + 1


@pytest.mark.parametrize("value, text", [(5, "5"), (0.1, "0.1"), (-0.0, "0"), (1e-5, "0.00001"),
                                         (-2.5, "-2.5"), (123456.789, "123456.789")])
def test_numbers_sent_as_plain_decimals(value: float, text: str) -> None:
    assert axis_session("stage", 1, ErrorRouter()).arg_text(value, "PA") == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e13])
def test_impossible_numbers_are_refused_before_sending(value: float) -> None:
    with pytest.raises(ValueError, match="1PA"):
        axis_session("stage", 1, ErrorRouter()).arg_text(value, "PA")


def test_router_keeps_other_axes_errors_for_them_bounded() -> None:
    router = ErrorRouter()
    errors = [esp.EspError(7, 1, "PARAMETER OUT OF RANGE"), esp.EspError(104, 2, "x"),
              *[esp.EspError(206, i, "y") for i in range(12)]]
    own = router.split(3, errors)
    assert [e.code for e in own] == [7]  # general: the command just sent on axis 3
    assert [e.code for e in router.take(2)] == [206] * esp.FIFO_DEPTH  # oldest dropped
    assert [e.code for e in router.take(1)] == [104]
    assert router.take(1) == []


class ScriptedController:
    """Just enough ESP300 for the axis session: position, motion state and a FIFO."""

    def __init__(self) -> None:
        self.position = "1.5"
        self.done = "1"
        self.errors: list[str] = []

    def __call__(self, cmd: str) -> bytes | None:
        if cmd.endswith("TP?"):
            return f"{self.position}\r\n".encode()
        if cmd.endswith("MD?"):
            return f"{self.done}\r\n".encode()
        if cmd == "TB?":
            text = self.errors.pop(0) if self.errors else "0, 5, NO ERROR DETECTED"
            return f"{text}\r\n".encode()
        return None


def axis_session(instrument_id: str, axis: int, router: ErrorRouter) -> Esp300Axis:
    """An ESP300 axis whose exchanges the tests run on a FakeLine themselves."""
    port = SimpleNamespace(shared=lambda key, factory: router)
    return Esp300Axis(InstrumentContext(instrument_id, "newport.esp300", {"axis": axis}, (),
                                        port=port))  # type: ignore[arg-type]


def test_a_limit_hit_is_reported_once_by_a_poll_and_raised_by_the_wait() -> None:
    dev = ScriptedController()
    line = FakeLine(dev)
    router = ErrorRouter()
    axis1 = axis_session("x", 1, router)
    axis2 = axis_session("y", 2, router)
    axis1.motion_fn("1PA30")(line)
    assert line.sent[-2:] == ["1PA30", "TB?"]
    dev.errors = ["104, 99, POSITIVE HARDWARE LIMIT DETECTED", "205, 99, NEGATIVE HARDWARE"]
    position, meta = axis1.poll_fn()(line)
    assert position == 1.5
    assert meta["moving"] is False and meta["error_code"] == 104
    _, meta = axis1.poll_fn()(line)
    assert "error_code" not in meta  # reported once
    with pytest.raises(DriverError) as info:
        axis1.raise_faults()
    assert (info.value.code, info.value.command) == (104, "1PA30")
    axis1.raise_faults()  # raised once
    _, meta2 = axis2.poll_fn()(line)  # axis 2's error, drained by axis 1, reaches axis 2
    assert meta2["error_code"] == 205


def test_a_set_command_raises_the_error_it_caused() -> None:
    dev = ScriptedController()
    line = FakeLine(dev)
    session = axis_session("x", 1, ErrorRouter())
    dev.errors = ["111, 4, MAXIMUM ACCELERATION EXCEEDED"]
    with pytest.raises(DriverError) as info:
        session.set_fn("1AC1000000")(line)
    assert (info.value.code, info.value.command) == (111, "1AC1000000")
    assert "MAXIMUM ACCELERATION EXCEEDED" in info.value.message


def test_a_silent_query_is_explained_by_the_fifo_or_is_a_timeout() -> None:
    dev = ScriptedController()
    line = FakeLine(dev)
    session = axis_session("x", 1, ErrorRouter())
    dev.errors = ["6, 4, COMMAND DOES NOT EXIST"]
    with pytest.raises(DriverError) as info:
        session.query_fn("1ZZ?", str, also=1)(line)
    assert info.value.code == 6
    with pytest.raises(DriverTimeoutError) as tinfo:
        session.query_fn("1ZZ?", str, also=1)(line)
    assert tinfo.value.command == "1ZZ?" and "x" in str(tinfo.value)
    dead = FakeLine(lambda cmd: None)
    with pytest.raises(DriverTimeoutError) as dinfo:
        session.query_fn("1TP?", float)(dead)
    assert dinfo.value.command == "1TP?"  # not the TB? asked to explain the silence


def test_a_silent_controller_fails_the_users_command_not_a_helper_query() -> None:
    """The FIFO check after a set and the resynchronisation before one are the driver's
    business; their failure used to be reported as a failure of ``TB?`` or ``VE?``."""
    line = FakeLine(ScriptedController())
    session = axis_session("x", 1, ErrorRouter())
    lines.resync_by(line, "VE?", "ESP300 Version 3.08", esp.COMMAND_END, esp.REPLY_END)
    line.answer = lambda cmd: None  # the controller stops answering
    with pytest.raises(DriverTimeoutError) as sent:
        session.motion_fn("1PA5")(line)
    assert sent.value.command == "1PA5"
    assert sent.value.message.startswith("sent; checking the error FIFO (TB?) after it: no reply")
    with pytest.raises(DriverTimeoutError) as held:
        session.set_fn("1SL-1")(line)
    assert held.value.command == "1SL-1" and held.value.message.startswith("not sent: ")
    assert "VE?" in held.value.message and "1SL-1" not in line.sent
    dev = ScriptedController()  # answering again: the reply to VE? brings it back in step
    line.answer = lambda cmd: b"ESP300 Version 3.08\r\n" if cmd == "VE?" else dev(cmd)
    assert session.query_fn("1TP?", float)(line) == 1.5


@pytest.mark.parametrize("reply", ["1E999", "-1e400"])
def test_a_number_past_a_floats_range_is_a_garbled_reply(reply: str) -> None:
    """``float('1E999')`` is inf: a number's form, but line noise all the same."""
    with pytest.raises(ValueError, match="float's range"):
        lines.number(reply)
    dev = ScriptedController()
    dev.done = reply  # MD? answered with it: int() of the inf it became overflowed
    with pytest.raises(DriverError, match="garbled reply '1E999'|garbled reply '-1e400'"):
        axis_session("x", 1, ErrorRouter()).poll_fn()(FakeLine(dev))


def test_every_exchange_starts_by_dropping_stale_input() -> None:
    line = FakeLine(ScriptedController())
    session = axis_session("x", 1, ErrorRouter())
    line._out += b"9.99\r\n"  # a reply that came after its reader gave up
    assert session.query_fn("1TP?", float)(line) == 1.5


# ---------------------------------------------------------------------------- 1830-C
@pytest.mark.parametrize("status, code, words", [
    (1, 1, ["parameter error"]), (2, 2, ["command error"]),
    (3, 3, ["parameter error", "command error"]), (144 | 1, 1, ["parameter error"]),
])
def test_status_error_bits(status: int, code: int, words: list[str]) -> None:
    err = pm.status_error("meter", "W5000", status)
    assert err is not None and err.code == code and err.command == "W5000"
    assert all(w in err.message for w in words)


@pytest.mark.parametrize("status, flags", [
    (0, {}), (144, {}), (4, {"saturated": True}), (8, {"over_range": True}),
    (12 | 128, {"saturated": True, "over_range": True}),
])
def test_reading_flags(status: int, flags: dict[str, bool]) -> None:
    assert pm.status_error("meter", "D?", status) is None
    assert pm.reading_flags(status, False) == flags
    assert pm.reading_flags(status, True) == {**flags, "busy": True}


@pytest.mark.parametrize("status, was_busy, busy", [
    (0, False, False), (128, False, False),  # no busy spell: a repeated reading is current
    (32, False, True), (32 | 128, True, True),  # busy: the reading is from before
    (0, True, True),  # busy no more, but no new reading yet: still the one from before
    (128, True, False),  # a new reading since: current again
])
def test_a_reading_from_before_a_busy_spell(status: int, was_busy: bool, busy: bool) -> None:
    assert pm.from_busy_spell(status, was_busy) is busy


def test_meter_set_command_checks_and_clears_the_status_byte() -> None:
    status = {"value": 0}

    def meter(cmd: str) -> bytes | None:
        if cmd == "Q?":
            return f"{status['value']}\n".encode()
        if cmd == "C":
            status["value"] = 0
        elif cmd.startswith("W"):
            status["value"] = 1 if int(cmd[1:]) > 1100 else 0
        return None

    line = FakeLine(meter, terminator=b"\n")
    pm.set_command(line, "meter", "W800")
    with pytest.raises(DriverError) as info:
        pm.set_command(line, "meter", "W5000")
    assert info.value.code == 1
    assert line.sent[-3:] == ["W5000", "Q?", "C"]


@pytest.mark.parametrize("make, arg", [
    (pm.wavelength_command, 800.5), (pm.wavelength_command, 0), (pm.range_command, 9),
    (pm.wavelength_command, float("inf")), (pm.wavelength_command, float("nan")),
    (pm.units_command, "mW"), (pm.filter_command, "turbo"),
])
def test_meter_arguments_refused_before_sending(make: object, arg: object) -> None:
    with pytest.raises(ValueError, match="meter"):
        make(arg, "meter")  # type: ignore[operator]


def test_meter_commands() -> None:
    assert pm.wavelength_command(800, "m") == "W800"
    assert pm.range_command(0, "m") == "R0"
    assert pm.units_command("dBm", "m") == "U3"
    assert pm.filter_command("slow", "m") == "F1"


def test_a_meter_that_answers_units_out_of_range_is_refused_at_connect() -> None:
    """``U?`` is 1..4 on a 1830-C; its parser's bare ValueError named neither the
    instrument nor the query."""
    port = SimpleNamespace(shared=lambda key, factory: factory())
    meter = Meter1830c(InstrumentContext("meter", "newport.1830c", {}, (),
                                         port=port))  # type: ignore[arg-type]
    line = FakeLine(lambda cmd: {"Q?": b"0\n", "U?": b"7\n"}.get(cmd), terminator=b"\n")
    connect = meter.connect().fn
    assert connect is not None
    with pytest.raises(DriverError, match=r"meter: 'U\?' \[code garbled\]: garbled reply '7'"):
        connect(line)


class LaggingLine(FakeLine):
    """A meter whose reply to each command comes ``lag[command]`` reads after it is sent
    (each read is one read timeout of a real line)."""

    def __init__(self, replies: dict[str, bytes], lag: dict[str, int]) -> None:
        super().__init__(lambda cmd: None, b"\n")
        self.replies, self.lag = replies, lag
        self.reads = 0
        self.pending: list[tuple[int, bytes]] = []

    def write(self, data: bytes) -> int:
        command = data.decode("ascii").strip()
        self.sent.append(command)
        self.pending.append((self.reads + self.lag[command], self.replies[command]))
        return len(data)

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        self.reads += 1
        for due, reply in [p for p in self.pending if p[0] <= self.reads]:
            self.pending.remove((due, reply))
            self._out += reply
        return super().read_until(expected, size)


def test_a_late_reading_is_read_before_the_next_query_never_as_its_answer() -> None:
    """``D?`` goes unanswered and no ``Q?`` is asked into the line (the meter answers every
    ``D?``: its silence needs no explaining). The next transaction reads the reading still
    owed before it sends anything, and fails while it has not come; once it has, the next
    query gets its own answer: the status byte is 128, never read as a wavelength."""
    line = LaggingLine({"D?": b"1E-6\n", "W?": b"0633\n", "Q?": b"128\n"},
                       {"D?": 3, "W?": 1, "Q?": 1})
    with pytest.raises(DriverTimeoutError) as info:
        pm.query(line, "meter", "D?")
    assert (info.value.command, info.value.code) == ("D?", "timeout")
    with pytest.raises(DriverTimeoutError, match=r"still owes the reply to D\?") as late:
        pm.begin(line, line.timeout, "meter", "W?")
    assert (late.value.command, late.value.code) == ("W?", "timeout")
    assert line.sent == ["D?"]  # nothing asked while a reply is owed
    pm.begin(line, line.timeout, "meter", "W?")  # the reading comes, and is skipped
    assert pm.query(line, "meter", "W?") == "0633"
    assert pm.read_status(line, "meter") == 128


def test_a_reply_owed_too_long_is_given_up_as_lost() -> None:
    """A reply that never comes (a meter switched off mid-query) keeps the line out of step
    for :data:`LOST_AFTER_TIMEOUTS` read timeouts at most."""
    line = FakeLine(lambda cmd: b"0633\n" if cmd == "W?" else None, terminator=b"\n")
    line.timeout = 0.02
    with pytest.raises(DriverTimeoutError):
        pm.query(line, "meter", "D?")
    asked = time.monotonic()

    def in_step() -> bool:
        try:
            pm.begin(line, line.timeout, "meter", "W?")
        except DriverTimeoutError:
            return False
        return True

    assert not in_step()
    wait_until(in_step, "the reply owed to be given up as lost", timeout=5)
    assert time.monotonic() - asked >= pm.LOST_AFTER_TIMEOUTS * line.timeout
    assert pm.query(line, "meter", "W?") == "0633"
