"""What a query's link faults become: each a driver error naming the instrument, the command
and the fault, the VISA or OS error chained, and the session marked out of step (so the next
exchange resynchronises before it sends anything)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from pyvisa import constants
from pyvisa.errors import VisaIOError

from daqhub.driver import DriverError, DriverTimeoutError
from daqhub_scpi.protocol import LOST_AFTER_TIMEOUTS, ScpiProtocol, ScpiSettings, session_state


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


def identified(proto: ScpiProtocol) -> ScriptedSession:
    """A session on which ``proto`` has asked ``*IDN?`` once: resynchronisation knows it."""
    session = ScriptedSession([], [b"ACME,DMM,1,1.0\n"])
    assert proto.idn_fn()(session) == "ACME,DMM,1,1.0"
    return session


def test_every_identification_owed_is_read_before_the_session_is_back_in_step() -> None:
    """An identification that comes late looks like the one the resynchronisation asked for;
    taking it for that left the real one to answer the next query."""
    proto = dmm()
    session = identified(proto)
    # *IDN? times out, nothing to drain; its late reply comes while resynchronising, the
    # resync's own does not
    session.reads = [timeout(), timeout(), b"ACME,DMM,1,1.0\n", timeout()]
    with pytest.raises(DriverTimeoutError, match=r"'\*IDN\?': no complete reply within 300 ms"):
        proto.idn_fn()(session)
    assert session_state(session).out_of_step
    # drained: the resync's late answer; then the new resync's answer, then the reading's
    session.reads = [b"ACME,DMM,1,1.0\n", timeout(), b"ACME,DMM,1,1.0\n", b"+1.5\n"]
    assert readings(proto)(session) == {"voltage": 1.5}
    assert not session.reads and not session_state(session).out_of_step


def test_an_identification_that_never_comes_is_given_up_after_ten_timeouts() -> None:
    """A lost reply must not keep the session out of step for good."""
    proto = dmm()
    session = identified(proto)
    session.reads = [timeout(), timeout()]  # the *IDN? and the resync's are both lost
    with pytest.raises(DriverTimeoutError):
        proto.idn_fn()(session)
    session.reads = [timeout(), b"ACME,DMM,1,1.0\n"]  # the instrument answers again
    with pytest.raises(DriverError, match="out of step .* and resynchronising failed"):
        readings(proto)(session)  # two identifications still owed: they may yet come
    state = session_state(session)
    assert len(state.idn_owed) == 2
    ten_timeouts_ago = time.monotonic() - LOST_AFTER_TIMEOUTS * 0.3 - 0.1
    state.idn_owed = deque([ten_timeouts_ago] * 2)
    session.reads = [timeout(), b"ACME,DMM,1,1.0\n", b"+1.5\n"]
    assert readings(proto)(session) == {"voltage": 1.5}
