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
