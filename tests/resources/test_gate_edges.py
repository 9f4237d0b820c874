"""Edge cases of the gate: misuse from a loop, cancellation, async timeouts, overrun, close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from resources_fakes import PtyDevice

from daqhub.resources import (
    PortIO,
    ResourceClosedError,
    ResourceTimeoutError,
    SerialPortManager,
    SharedSerialPort,
    TransactionOverrunError,
)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def port(serial_mgr: SerialPortManager,
         pty_device: Callable[..., PtyDevice]) -> SharedSerialPort:
    return serial_mgr.port(pty_device().path)


@pytest.fixture
def held_by_scan(port: SharedSerialPort) -> Iterator[threading.Event]:
    """The port leased by another thread ('scan') until the returned event is set."""
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with port.lease(owner="scan", timeout=2):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(5)
    yield release
    release.set()
    t.join(5)


def test_blocking_call_inside_a_running_loop_is_refused(port: SharedSerialPort) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="use the async API"):
            port.query(b"Q1\n", terminator=b"\n")
        with pytest.raises(RuntimeError, match="async with"):
            with port.lease():
                pass

    asyncio.run(main())


def test_async_wait_is_bounded_and_names_the_holder(port: SharedSerialPort,
                                                    held_by_scan: threading.Event) -> None:
    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(ResourceTimeoutError, match=r"'slider' timed out after 0\.\d+ s .*"
                           r"held by 'scan' for"):
            await port.aquery(b"Q1\n", terminator=b"\n", owner="slider", timeout=0.2)
        assert time.monotonic() - start < 1.0
        with pytest.raises(ResourceTimeoutError, match="held by 'scan'"):
            async with port.lease(owner="v4", timeout=0.1):
                pass

    asyncio.run(main())
    assert port.gate.queue_depth == 0


def test_cancelled_coroutine_withdraws_its_queued_request(
        port: SharedSerialPort, held_by_scan: threading.Event) -> None:
    async def main() -> None:
        task = asyncio.create_task(port.aquery(b"Qcancelled\n", terminator=b"\n", timeout=5))
        while port.gate.queue_depth == 0:
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert port.gate.queue_depth == 0

    asyncio.run(main())
    held_by_scan.set()
    assert port.query(b"Qafter\n", terminator=b"\n") == b"Rafter"
    assert port.stats()["transactions"] == 1  # the cancelled one was never sent


def test_queued_transaction_that_overruns_is_reported(port: SharedSerialPort) -> None:
    started = threading.Event()
    finish = threading.Event()

    def slow(io: PortIO) -> str:
        started.set()
        finish.wait(5)
        return "late"

    async def main() -> None:
        # runs on the worker; the caller gives up after its budget, the I/O is not cut short
        with pytest.raises(TransactionOverrunError, match="still running"):
            await port.atransaction(slow, owner="homing", timeout=0.2)

    asyncio.run(main())
    assert started.is_set()
    finish.set()
    assert port.query(b"Q2\n", terminator=b"\n", timeout=2) == b"R2"


def test_close_fails_waiters_with_a_clear_error(pty_device: Callable[..., PtyDevice]) -> None:
    mgr = SerialPortManager()
    port = mgr.port(pty_device().path)
    held = threading.Event()
    release = threading.Event()
    errors: list[object] = []

    def hold() -> None:
        with port.lease(owner="scan"):
            held.set()
            release.wait(5)

    def wait_for_port() -> None:
        try:
            port.query(b"Q1\n", terminator=b"\n", owner="poller", timeout=5)
        except BaseException as exc:
            errors.append(exc)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    waiter = threading.Thread(target=wait_for_port)
    waiter.start()
    while port.gate.queue_depth == 0:
        time.sleep(0.002)
    closer = threading.Thread(target=lambda: errors.append(mgr.close_all(3)))
    closer.start()
    waiter.join(5)
    release.set()
    holder.join(5)
    closer.join(5)
    assert isinstance(errors[0], ResourceClosedError)
    assert "was closed while 'poller' waited" in str(errors[0])
    assert errors[1] == []  # closed cleanly once the lease ended
    with pytest.raises(Exception, match="closed"):
        port.query(b"Q1\n", terminator=b"\n")


def test_unbounded_waits_are_refused(port: SharedSerialPort) -> None:
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="timeout must be between"):
            port.query(b"Q1\n", terminator=b"\n", timeout=bad)
        with pytest.raises(ValueError, match="timeout must be between"):
            port.lease(timeout=bad)
