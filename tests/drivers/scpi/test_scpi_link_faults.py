"""What a query's link faults become: each a driver error naming the instrument, the command
and the fault, the VISA or OS error chained, and the session marked out of step (so the next
exchange resynchronises before it sends anything)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pyvisa import constants
from pyvisa.errors import VisaIOError

from daqhub.driver import DriverError, DriverTimeoutError
from daqhub_scpi.protocol import ScpiProtocol, ScpiSettings, session_state


class ScriptedSession:
    """A pyvisa session whose writes and reads do what the test says, in order."""

    def __init__(self, writes: list[Any], reads: list[Any]) -> None:
        self.writes, self.reads = writes, reads
        self.sent: list[bytes] = []
        self.timeout = 2000
        self.read_termination = "\n"

    def write_raw(self, data: bytes) -> None:
        outcome = self.writes.pop(0) if self.writes else None
        if isinstance(outcome, BaseException):
            raise outcome
        self.sent.append(data)

    def read_raw(self) -> bytes:
        outcome = self.reads.pop(0) if self.reads else VisaIOError(
            constants.StatusCode.error_timeout)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]


def timeout() -> VisaIOError:
    return VisaIOError(constants.StatusCode.error_timeout)


def dmm() -> ScpiProtocol:
    return ScpiProtocol("dmm", ScpiSettings(timeout_ms=300, check_errors="never"), "GPIB0::5")


def readings(proto: ScpiProtocol) -> Callable[[Any], Any]:
    return proto.read_fn([("voltage", "MEAS:VOLT:DC?", float, lambda v, t: v)])


@pytest.mark.parametrize("writes, reads, kind, words, cause", [
    ([VisaIOError(constants.StatusCode.error_io)], [], DriverError,
     "sending failed on GPIB0::5: VI_ERROR_IO", VisaIOError),
    ([BrokenPipeError("gone")], [], DriverError,
     "connection lost on GPIB0::5 while sending: BrokenPipeError('gone')", BrokenPipeError),
    ([None], [timeout()], DriverTimeoutError,
     "no complete reply within 300 ms (timeout_ms) while dmm held GPIB0::5", VisaIOError),
    ([None], [ConnectionResetError("reset")], DriverError,
     "connection lost on GPIB0::5 while reading the reply: ConnectionResetError('reset')",
     ConnectionResetError),
    ([None], [VisaIOError(constants.StatusCode.error_io)], DriverError,
     "reading the reply failed on GPIB0::5", VisaIOError),
    ([None], [b"+1.00"], DriverError,
     "truncated reply '+1.00' on GPIB0::5: it does not end with '\\n'", type(None)),
])
def test_a_fault_of_the_link_is_named_and_puts_the_session_out_of_step(
        writes: list[Any], reads: list[Any], kind: type[Exception], words: str,
        cause: type[BaseException]) -> None:
    session = ScriptedSession(writes, reads)
    with pytest.raises(kind) as info:
        readings(dmm())(session)
    assert words in str(info.value) and str(info.value).startswith("dmm: 'MEAS:VOLT:DC?'")
    assert type(info.value.__cause__) is cause
    state = session_state(session)
    # the faults after a send leave the session resynchronised by draining (no *IDN? known)
    assert state.out_of_step is (len(session.sent) == 0)
    assert "dmm:" in state.why


def test_a_good_reply_after_a_fault_is_read_once_the_session_is_back_in_step() -> None:
    session = ScriptedSession([BrokenPipeError("gone")], [])
    proto = dmm()
    with pytest.raises(DriverError, match="while sending"):
        readings(proto)(session)
    session.reads = [b"stale\n", timeout(), b"+1.5\n"]  # drained, then the answer
    assert readings(proto)(session) == {"voltage": 1.5}
    assert session.sent == [b"MEAS:VOLT:DC?\n"] and not session_state(session).out_of_step
