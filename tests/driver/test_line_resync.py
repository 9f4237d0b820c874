"""daqhub.driver.lines: a line on which a reply was given up on gets back in step before
anything new is asked, so a late reply is skipped, never read as the next answer.

Driven over a scripted line: each read returns the next scripted arrival (``b""`` is a read
that timed out), and every byte written is recorded.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from daqhub.driver import DriverReplyError, DriverTimeoutError, lines

pytestmark = pytest.mark.timeout(10)

END = b"\r\n"
MARKER = b"VE?\r"
ANSWER = b"ESP300 Version 3.04\r\n"


class ScriptedLine:
    name = "line0"

    def __init__(self) -> None:
        self.timeout = 0.1
        self.arrivals: list[bytes] = []
        self.sent: list[bytes] = []

    def reset_input_buffer(self) -> None:
        """Nothing has arrived yet when a transaction begins: late lines come during it."""

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def read_until(self, end: bytes, size: int | None = None) -> bytes:
        return self.arrivals.pop(0) if self.arrivals else b""


def in_step_line() -> ScriptedLine:
    io = ScriptedLine()
    lines.resync_by(io, "VE?", ANSWER[:-2].decode(), b"\r", END)
    return io


def give_up(io: ScriptedLine) -> None:
    assert lines.read_line(io, "dut", "1TP?", END) is None  # nothing arrived in time


def test_a_line_in_step_is_asked_nothing_extra() -> None:
    io = in_step_line()
    lines.begin(io, 0.1, "dut")
    assert io.sent == []


def test_after_a_reply_given_up_on_the_late_lines_are_skipped_up_to_the_marker() -> None:
    io = in_step_line()
    give_up(io)
    io.arrivals = [b"1.50000\r\n", b"0, 1, NO ERROR DETECTED\r\n", ANSWER, b"7.5\r\n"]
    lines.begin(io, 0.1, "dut")
    assert io.sent == [MARKER]
    assert lines.read_line(io, "dut", "1VA?", END) == "7.5"  # its own answer, not 1.5
    lines.begin(io, 0.1, "dut")
    assert io.sent == [MARKER]  # in step again: no second resync


def test_a_line_without_a_marker_drops_late_lines_until_it_is_quiet() -> None:
    io = ScriptedLine()
    give_up(io)
    io.arrivals = [b"5E-9\r\n", b"0\r\n", b"", b"7.5\r\n"]  # two late replies, a pause, ours
    lines.begin(io, 0.1, "dut")
    assert io.sent == []  # nothing asked: waited out
    assert lines.read_line(io, "dut", "D?", END) == "7.5"
    io.arrivals = [b"8.5\r\n"]
    lines.begin(io, 0.1, "dut")  # in step again: nothing read before the next exchange
    assert lines.read_line(io, "dut", "D?", END) == "8.5"


def test_a_line_without_a_marker_in_step_is_not_waited_on() -> None:
    io = ScriptedLine()
    io.arrivals = [b"7.5\r\n"]
    lines.begin(io, 0.1, "dut")
    assert lines.read_line(io, "dut", "D?", END) == "7.5"


def test_a_line_out_of_step_when_its_marker_is_registered_is_resynchronised() -> None:
    io = ScriptedLine()
    give_up(io)  # before connect registered the marker
    lines.resync_by(io, "VE?", ANSWER[:-2].decode(), b"\r", END)
    io.arrivals = [b"1.50000\r\n", ANSWER, b"7.5\r\n"]
    lines.begin(io, 0.1, "dut")
    assert io.sent == [MARKER]
    assert lines.read_line(io, "dut", "1VA?", END) == "7.5"


def test_a_marker_answer_that_does_not_come_fails_the_transaction_and_is_tried_again() -> None:
    io = in_step_line()
    give_up(io)
    with pytest.raises(DriverTimeoutError) as info:
        lines.begin(io, 0.1, "dut")  # a quiet line: the marker's answer never came
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("dut", "VE?", "timeout")
    assert "line0 is out of step" in str(err) and "0.1 s" in str(err)
    io.arrivals = [ANSWER]  # then quiet: the first marker's answer was lost, not late
    lines.begin(io, 0.1, "dut")
    assert io.sent == [MARKER, MARKER]
    lines.begin(io, 0.1, "dut")
    assert io.sent == [MARKER, MARKER]  # in step


def test_markers_that_come_late_are_each_accounted_for() -> None:
    io = in_step_line()
    give_up(io)
    io.arrivals = [b"1.50000\r\n"]  # something came, then nothing: the marker may be late
    with pytest.raises(DriverTimeoutError):
        lines.begin(io, 0.1, "dut")
    io.arrivals = [ANSWER, b"2.0\r\n", ANSWER, b"7.5\r\n"]  # the first marker's, then ours
    lines.begin(io, 0.1, "dut")
    assert lines.read_line(io, "dut", "1VA?", END) == "7.5"


def test_an_answer_lost_after_a_late_line_does_not_keep_the_line_out_of_step() -> None:
    io = in_step_line()
    give_up(io)
    io.arrivals = [b"1.50000\r\n"]  # the first marker's answer will never come
    with pytest.raises(DriverTimeoutError):
        lines.begin(io, 0.1, "dut")
    for _ in range(2):
        io.arrivals = [ANSWER]  # only each attempt's own answer, then quiet
        lines.begin(io, 0.1, "dut")
    assert len(io.sent) == 2  # the second attempt ended it; the third begin asked nothing


@pytest.mark.parametrize("make", [in_step_line, ScriptedLine], ids=["marker", "quiet"])
def test_a_line_that_never_stops_talking_is_a_garbled_line_not_a_hang(
        make: Callable[[], ScriptedLine]) -> None:
    io = make()
    give_up(io)
    io.arrivals = [b"noise\r\n"] * (lines.RESYNC_MAX_LINES + 5)
    with pytest.raises(DriverReplyError) as info:
        lines.begin(io, 0.1, "dut")
    assert info.value.code == "garbled" and "line0 is out of step" in str(info.value)


@pytest.mark.parametrize("broken", [b"1.5", b"\xfe\x07\r\n"], ids=["truncated", "garbled"])
def test_a_broken_reply_puts_the_line_out_of_step_too(broken: bytes) -> None:
    io = in_step_line()
    io.arrivals = [broken]
    with pytest.raises(DriverReplyError):
        lines.read_line(io, "dut", "1TP?", END)
    io.arrivals = [ANSWER]
    lines.begin(io, 0.1, "dut")
    assert io.sent == [MARKER]
