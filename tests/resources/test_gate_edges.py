"""Edge cases of the gate: misuse from a loop, cancellation, async timeouts, overrun, close."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polling import wait_until
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
    wait_until(lambda: port.gate.queue_depth > 0, "the poller queued behind the lease",
               timeout=5, every=0.002)
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


def test_a_holder_letting_go_while_a_request_is_being_queued_leaves_it_served() -> None:
    """The one interleaving the mutex-free release must survive, forced step by step.

    'late' finds the gate taken; before its request is in the queue, the holder finishes,
    lets go (no mutex) and sees an empty queue. The request must still be served, because
    'late' tries the gate again after queueing, instead of waiting out its timeout.
    """
    from daqhub.resources.gate import Gate
    from daqhub.resources.ordering import SERIAL_ORDER
    from daqhub.resources.stats import TransactionStats

    gate = Gate("serial:interleave", (SERIAL_ORDER, "interleave"))
    stats = TransactionStats()
    inside, finish, holder_gone = threading.Event(), threading.Event(), threading.Event()

    def hold(_: object) -> str:
        inside.set()
        assert finish.wait(5)
        return "held"

    def holder() -> None:
        assert gate.run(hold, None, "holder", "hold", 2.0, False, stats) == "held"
        holder_gone.set()

    enqueue = gate._enqueue_locked

    def enqueue_after_the_holder_left(entry: Any) -> None:
        if entry.owner == "late":
            finish.set()
            assert holder_gone.wait(5)
        enqueue(entry)

    gate._enqueue_locked = enqueue_after_the_holder_left  # type: ignore[method-assign]
    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(5)
    started = time.monotonic()
    assert gate.run(lambda n: n + 1, 41, "late", "late", 1.0, False, stats) == 42
    assert time.monotonic() - started < 0.9  # served, not timed out and retried
    t.join(5)
    assert stats.transactions == 2 and stats.timeouts == 0
    assert gate.close(2)


def test_no_request_is_stranded_by_a_release_without_the_mutex() -> None:
    """Inline holders let go without the gate's mutex while others queue behind them.

    Empty transactions make the window between a queuer's failed take and a holder's release
    as likely as it gets, and so does a tiny switch interval; a request stranded there would
    wait out its 2 s and raise.
    """
    from daqhub.resources.gate import Gate
    from daqhub.resources.ordering import SERIAL_ORDER
    from daqhub.resources.stats import TransactionStats

    gate = Gate("serial:race", (SERIAL_ORDER, "race"))
    stats = TransactionStats()
    inside = [0]

    def runner(n: int) -> int:
        inside[0] += 1
        try:
            assert inside[0] == 1, "two transactions inside the gate at once"
            return n
        finally:
            inside[0] -= 1

    errors: list[BaseException] = []

    def v2(k: int) -> None:
        try:
            for n in range(1500):
                assert gate.run(runner, n, f"v2-{k}", "race", 2.0, n % 7 == 0, stats) == n
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    async def v4(k: int) -> None:
        for n in range(300):
            assert await gate.arun(runner, n, f"v4-{k}", "race", 2.0, False, stats) == n

    async def all_v4() -> None:
        await asyncio.gather(*(v4(k) for k in range(3)))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two bytecodes
    try:
        for with_v4 in (False, True):  # threads alone first: nobody else would rescue them
            threads = [threading.Thread(target=v2, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            if with_v4:
                asyncio.run(all_v4())
            for t in threads:
                t.join(15)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]
    assert stats.transactions == 2 * 3 * 1500 + 3 * 300
    assert stats.errors == stats.timeouts == 0
    assert gate.queue_depth == 0 and gate.holder_description() is None
    assert gate.close(2)
