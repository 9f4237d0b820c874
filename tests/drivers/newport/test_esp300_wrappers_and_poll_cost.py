"""ESP300: define position, jog, move to limit, identity, and what one poll costs on the wire.

Scripted byte exchanges written from the manual's text (the protocol reference): commands
end with CR and set commands get no reply; queries answer one line ending CR LF; every
problem lands in the error FIFO that ``TB?`` pops (``code, timestamp, MESSAGE``), code 0
when empty; axis errors are ``100*axis + n``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from daqhub.instrument import DriverError
from daqhub_newport.esp300_axis import IDLE_ERROR_CHECK_S
from daqhub_sims.scripted import ScriptedPort, scripted_instrument

pytestmark = pytest.mark.timeout(20)
FLAVORS = ("v2", "v4")
CLEAR = (b"TB?\r", b"0, 4410, NO ERROR DETECTED\r\n")


def call(inst: Any, name: str, *args: Any) -> Any:
    result = getattr(inst, name)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


@pytest.fixture
def axis2(daqhub_host: Any) -> Callable[[str, list[tuple[bytes, bytes]]], tuple[Any, Any]]:
    def make(flavor: str, script: list[tuple[bytes, bytes]]) -> tuple[Any, ScriptedPort]:
        line = ScriptedPort(script)
        return scripted_instrument(daqhub_host, "newport.esp300", flavor, line,
                                   {"axis": 2}), line
    return make


@pytest.mark.parametrize("flavor", FLAVORS)
def test_identity_define_position_jog_and_move_to_limit(flavor: str, axis2: Any) -> None:
    inst, line = axis2(flavor, [
        (b"VE?\r", b"ESP300 Version 3.04 07/27/01\r\n"), CLEAR,
        (b"2ID?\r", b"UTM150CC1DD, B12345\r\n"), CLEAR,
        (b"2DH12.5\r", b""), CLEAR,
        (b"2DH0\r", b""), CLEAR,
        (b"2MV+\r", b""), CLEAR,
        (b"2MT-\r", b""), CLEAR,
    ])
    assert call(inst, "firmware") == "ESP300 Version 3.04 07/27/01"
    assert call(inst, "stage") == "UTM150CC1DD, B12345"
    call(inst, "define_position", 12.5)
    call(inst, "define_position", 0)
    call(inst, "jog", "+")
    call(inst, "move_to_limit", "-")
    with pytest.raises(ValueError, match="^dut: jog: direction must be one of '\\+', '-', "
                                         "got 'up'$"):
        call(inst, "jog", "up")
    line.assert_done()  # the refused direction sent nothing


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_refused_define_position_raises_its_error(flavor: str, axis2: Any) -> None:
    inst, line = axis2(flavor, [(b"2DH5\r", b""),
                                (b"TB?\r", b"213, 4411, MOTOR NOT ENABLED\r\n"), CLEAR])
    with pytest.raises(DriverError) as err:
        call(inst, "define_position", 5)
    assert (err.value.command, err.value.code) == ("2DH5", 213)
    line.assert_done()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_fault_during_a_jog_is_raised_by_the_wait_naming_the_jog(flavor: str,
                                                                   axis2: Any) -> None:
    inst, line = axis2(flavor, [
        (b"2MV+\r", b""), CLEAR,
        (b"2MD?\r", b"1\r\n"), (b"TB?\r", b"204, 5000, POSITIVE HARDWARE LIMIT DETECTED\r\n"),
        CLEAR,
    ])
    call(inst, "jog", "+")
    with pytest.raises(DriverError) as err:
        call(inst, "wait_until_done", 5.0)
    assert (err.value.command, err.value.code) == ("2MV+", 204)
    line.assert_done()


def polls(inst: Any, line: ScriptedPort, n: int) -> list[list[bytes]]:
    """The requests each of ``n`` polls sent."""
    out = []
    for _ in range(n):
        before = len(line.sent)
        call(inst, "read")
        out.append(line.sent[before:])
    return out


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_idle_poll_is_two_exchanges_and_errors_are_read_when_they_can_be_waiting(
        flavor: str, axis2: Any) -> None:
    tp, md = b"2TP?\r", b"2MD?\r"
    idle = [(tp, b"1.5\r\n"), (md, b"1\r\n")]
    inst, line = axis2(flavor, [
        *idle, CLEAR,                                     # first poll: reads the FIFO
        *idle, *idle,                                     # idle: TP? and MD? only
        (b"2PA5\r", b""), CLEAR,                          # a move: its errors read at once
        (tp, b"3.0\r\n"), (md, b"0\r\n"), CLEAR,          # moving: read the FIFO
        (tp, b"5.0\r\n"), (md, b"1\r\n"),                 # just stopped: read it once more
        (b"TB?\r", b"205, 9000, NEGATIVE HARDWARE LIMIT DETECTED\r\n"),
        (b"TB?\r", b"305, 9001, NEGATIVE HARDWARE LIMIT DETECTED\r\n"), CLEAR,
        (tp, b"5.0\r\n"), (md, b"1\r\n"),                 # idle again
        *idle, CLEAR,                                     # idle, nobody read it for long
        (md, b"1\r\n"), CLEAR,                            # the wait for the move
    ])
    sent = polls(inst, line, 3)
    assert [len(p) for p in sent] == [3, 2, 2]
    call(inst, "move_absolute", 5.0)
    sent = polls(inst, line, 3)
    assert [len(p) for p in sent] == [3, 5, 2]
    router = inst.session.router
    assert router.pending(3) == 1  # axis 3's error is kept for axis 3, not reported here
    router.drained_at -= IDLE_ERROR_CHECK_S
    assert [len(p) for p in polls(inst, line, 1)] == [3]
    with pytest.raises(DriverError) as err:  # the fault is the move's, raised by its wait
        call(inst, "wait_until_done", 1.0)
    assert (err.value.command, err.value.code) == ("2PA5", 205)
    line.assert_done()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_move_is_its_command_and_the_fifo_read_whatever_came_before(
        flavor: str, axis2: Any) -> None:
    """A driver-side limit check made every move_relative ask ``MD?`` and ``DP?`` first,
    and a move after any raw query re-read ``SL?``/``SR?``; it also refused ``3 * 0.1``
    against a limit of 0.3 though ``2PA0.3`` goes out. The controller judges its limits."""
    inst, line = axis2(flavor, [
        (b"2PR0.1\r", b""), CLEAR,
        (b"2ZS?\r", b"4H\r\n"), CLEAR,
        (b"2PR0.1\r", b""), CLEAR,
        (b"2PA0.3\r", b""), CLEAR,
    ])
    call(inst, "move_relative", 0.1)
    assert call(inst, "raw_query", "2ZS?") == "4H"
    call(inst, "move_relative", 0.1)
    call(inst, "move_absolute", 3 * 0.1)
    line.assert_done()
