"""Raw ``query``/``aquery``: a reply given up on is dropped when it comes, never handed to the
next caller (another instrument on the bus included)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tty
from collections.abc import Callable, Iterator

import pytest
import pyvisa
from polling import wait_until
from resources_fakes import PtyDevice

from daqhub.resources import (
    ReplyTimeoutError,
    SerialPortManager,
    SharedSerialPort,
    SharedVisaResource,
    VisaSessionManager,
)
from daqhub_sims.scpi_tcp import ScpiTcpServer

pytestmark = pytest.mark.timeout(30)


def held_by(port: SharedSerialPort, owner: str) -> bool:
    return f"'{owner}'" in (port.gate.holder_description() or "")


def query_as(port: SharedSerialPort, flavor: str, data: bytes, owner: str,
             read_timeout: float | None = None) -> bytes:
    """``port.query``, or ``port.aquery`` in an event loop of its own."""
    if flavor == "sync":
        return port.query(data, terminator=b"\n", owner=owner, read_timeout=read_timeout)
    return asyncio.run(port.aquery(data, terminator=b"\n", owner=owner,
                                   read_timeout=read_timeout))


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_late_reply_is_not_handed_to_another_owners_query(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice],
        flavor: str) -> None:
    release = threading.Event()

    def device(line: bytes) -> bytes:
        if line == b"QSLOW":
            release.wait(10)  # answers only once the test lets it: late
        return b"R" + line[1:] + b"\n"

    port = serial_mgr.port(pty_device(on_request=device).path)
    with pytest.raises(ReplyTimeoutError, match=r"no complete reply to b'QSLOW\\n'.* within "
                                                r"1.0 s .*got b''"):
        query_as(port, flavor, b"QSLOW\n", "axis1", read_timeout=1.0)
    replies: list[bytes] = []
    asker = threading.Thread(target=lambda: replies.append(
        query_as(port, flavor, b"Q2\n", "axis2", read_timeout=2.0)))
    asker.start()
    try:
        wait_until(lambda: held_by(port, "axis2"), "axis2's query to hold the port",
                   every=0.002)
        release.set()  # axis1's reply comes now, while axis2 waits for its own
    finally:
        release.set()
        asker.join(10)
    assert replies == [b"R2"]  # not axis1's RSLOW
    assert query_as(port, flavor, b"Q3\n", "axis2") == b"R3"  # and the line stays in step


def test_reply_that_never_comes_costs_one_read_timeout_once(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    port = serial_mgr.port(pty_device(on_request=lambda line: None if line == b"QLOST" else
                                      b"R" + line[1:] + b"\n").path)
    with pytest.raises(ReplyTimeoutError):
        port.query(b"QLOST\n", terminator=b"\n", owner="axis1", read_timeout=0.5)
    start = time.monotonic()
    assert port.query(b"Q1\n", terminator=b"\n", owner="axis2") == b"R1"
    assert time.monotonic() - start >= 0.45  # the line was quiet for axis1's read timeout
    start = time.monotonic()
    assert port.query(b"Q2\n", terminator=b"\n", owner="axis2") == b"R2"
    assert time.monotonic() - start < 0.45  # and only once


def test_waiting_out_does_not_block_the_event_loop(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    port = serial_mgr.port(pty_device(on_request=lambda line: None if line == b"QLOST" else
                                      b"R" + line[1:] + b"\n").path)

    async def main() -> float:
        for _ in range(5):  # a quick kind of query: it may run in the loop's own thread
            assert await port.aquery(b"Q1\n", terminator=b"\n") == b"R1"
        with pytest.raises(ReplyTimeoutError):
            await port.aquery(b"QLOST\n", terminator=b"\n", read_timeout=0.6)
        longest = 0.0
        done = asyncio.Event()

        async def tick() -> None:
            nonlocal longest
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                longest = max(longest, time.monotonic() - last)
                last = time.monotonic()

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker has started
        assert await port.aquery(b"Q1\n", terminator=b"\n") == b"R1"  # waits 0.6 s first
        done.set()
        await ticker
        return longest

    assert asyncio.run(main()) < 0.4  # the loop kept running meanwhile


@pytest.fixture
def noisy_line() -> Iterator[str]:
    """A pty whose device sends bytes without a line end and never pauses (line noise)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def noise() -> None:
        while not stop.wait(0.005):
            os.write(master, b"~")

    thread = threading.Thread(target=noise, daemon=True)
    thread.start()
    yield os.ttyname(slave)
    stop.set()
    thread.join(5)
    os.close(master)
    os.close(slave)


def test_waiting_out_is_bounded_and_says_why(serial_mgr: SerialPortManager,
                                            noisy_line: str) -> None:
    port = serial_mgr.port(noisy_line)
    with pytest.raises(ReplyTimeoutError):
        port.query(b"Q1\n", terminator=b"\n", owner="axis1", read_timeout=0.1)
    start = time.monotonic()
    with pytest.raises(ReplyTimeoutError) as info:
        port.query(b"Q2\n", terminator=b"\n", owner="axis2")
    assert time.monotonic() - start < 5  # not for ever
    text = str(info.value)
    assert "out of step" in text and "b'Q1\\n'" in text and "'axis1'" in text
    assert "reads of 0.1 s" in text and "b'Q2\\n' was not sent" in text


def test_late_visa_reply_is_not_handed_to_the_next_query(visa_mgr: VisaSessionManager) -> None:
    with ScpiTcpServer("dmm") as server:
        res = visa_mgr.resource(server.resource, backend="@py", read_termination="\n",
                           write_termination="\n", timeout_ms=1000)
        idn = res.query("*IDN?", owner="script")
        with server.locked():  # the instrument is busy: *IDN? is answered after the timeout
            with pytest.raises(pyvisa.errors.VisaIOError, match="VI_ERROR_TMO"):
                res.query("*IDN?", owner="script")
        assert res.query("SYST:ERR?", owner="dmm") == '+0,"No error"'  # not the late idn
        assert asyncio.run(res.aquery("*IDN?", owner="dmm")) == idn


def buffered(port: SharedSerialPort) -> int:
    """Bytes the port has received and nobody has read yet."""
    return port.transaction(lambda io: io.in_waiting, owner="probe")


def answers_late_while_busy(release: threading.Event) -> Callable[[bytes], bytes]:
    """A device that answers every query in order, but ``QSLOW`` (and so every query sent
    after it) only once ``release`` is set: busy for as long as the test likes."""

    def device(line: bytes) -> bytes:
        if line == b"QSLOW":
            release.wait(10)
        return b"R" + line[1:] + b"\n"

    return device


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_two_late_replies_in_a_row_are_both_dropped(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice],
        flavor: str) -> None:
    release = threading.Event()
    port = serial_mgr.port(pty_device(on_request=answers_late_while_busy(release)).path)
    try:
        for data, owner in ((b"QSLOW\n", "axis1"), (b"Q2\n", "axis2")):
            with pytest.raises(ReplyTimeoutError):  # Q2 waits QSLOW's reply out in vain too
                query_as(port, flavor, data, owner, read_timeout=0.3)
    finally:
        release.set()  # both replies come now, late and in order
    wait_until(lambda: buffered(port) >= len(b"RSLOW\nR2\n"), "both late replies to come")
    assert query_as(port, flavor, b"Q3\n", "axis2") == b"R3"  # neither RSLOW nor R2
    assert query_as(port, flavor, b"Q4\n", "axis2") == b"R4"  # and the line stays in step


def test_a_silent_device_costs_one_read_timeout_per_query(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    answering = threading.Event()
    port = serial_mgr.port(pty_device(on_request=lambda line: b"R" + line[1:] + b"\n"
                                      if answering.is_set() else None).path)
    for n in (1, 2):  # Q2 first waits Q1's reply out: in vain, the device has gone quiet
        with pytest.raises(ReplyTimeoutError):
            port.query(b"Q%d\n" % n, terminator=b"\n", owner="axis1", read_timeout=0.5)
    for n in (3, 4, 5):
        start = time.monotonic()
        with pytest.raises(ReplyTimeoutError) as info:
            port.query(b"Q%d\n" % n, terminator=b"\n", owner="axis1", read_timeout=0.5)
        assert time.monotonic() - start < 0.9  # its own read timeout, not the last one's too
        assert "the device has gone quiet" in str(info.value)
    answering.set()  # it answers again: so do the queries, in step
    assert [port.query(b"Q%d\n" % n, terminator=b"\n", owner="axis2") for n in (6, 7, 8)] == [
        b"R6", b"R7", b"R8"]


def asrl_resource(visa_mgr: VisaSessionManager, dev: PtyDevice,
                  timeout_ms: int) -> SharedVisaResource:
    """The pty device as a VISA serial instrument (pyvisa-py), its lines ending in ``\\n``."""
    return visa_mgr.resource(f"ASRL{dev.path}::INSTR", backend="@py", read_termination="\n",
                             write_termination="\n", timeout_ms=timeout_ms)


def test_two_late_visa_replies_in_a_row_are_both_dropped(
        visa_mgr: VisaSessionManager, pty_device: Callable[..., PtyDevice]) -> None:
    release = threading.Event()
    res = asrl_resource(visa_mgr, pty_device(on_request=answers_late_while_busy(release)), 300)
    try:
        for command in ("QSLOW", "Q2"):
            with pytest.raises(pyvisa.errors.VisaIOError, match="VI_ERROR_TMO"):
                res.query(command, owner="script")
    finally:
        release.set()
    wait_until(lambda: res.transaction(lambda s: s.bytes_in_buffer, owner="probe")
               >= len(b"RSLOW\nR2\n"), "both late replies to come")
    assert res.query("Q3", owner="dmm") == "R3"
    assert asyncio.run(res.aquery("Q4", owner="dmm")) == "R4"


def test_a_silent_visa_instrument_costs_one_timeout_per_query(
        visa_mgr: VisaSessionManager, pty_device: Callable[..., PtyDevice]) -> None:
    answering = threading.Event()
    res = asrl_resource(visa_mgr, pty_device(on_request=lambda line: b"R" + line[1:] + b"\n"
                                             if answering.is_set() else None), 500)
    for n in (1, 2):
        with pytest.raises(pyvisa.errors.VisaIOError, match="VI_ERROR_TMO"):
            res.query(f"Q{n}", owner="script")
    for n in (3, 4, 5):
        start = time.monotonic()
        with pytest.raises(pyvisa.errors.VisaIOError, match="VI_ERROR_TMO"):
            res.query(f"Q{n}", owner="script")
        assert time.monotonic() - start < 0.9
    answering.set()
    assert [res.query(f"Q{n}", owner="dmm") for n in (6, 7, 8)] == ["R6", "R7", "R8"]
