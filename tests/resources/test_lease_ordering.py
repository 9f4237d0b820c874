"""Leases across managers, the global order, the lock-order checker and the diagnostic dump."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from polling import wait_until
from resources_fakes import PtyDevice

from daqhub.resources import (
    LockOrderChecker,
    LockOrderError,
    ResourceTimeoutError,
    SerialPortManager,
    SharedSerialPort,
    SharedVisaResource,
    VisaSessionManager,
    dump_gates,
    held_resources,
    lease,
)

pytestmark = pytest.mark.timeout(20)

Pair = tuple[SharedSerialPort, SharedVisaResource]


@pytest.fixture
def pair(serial_mgr: SerialPortManager, visa_mgr: VisaSessionManager, sim_backend: str,
         pty_device: Callable[..., PtyDevice]) -> Pair:
    port = serial_mgr.port(pty_device().path)
    res = visa_mgr.resource("GPIB0::5::INSTR", backend=sim_backend, read_termination="\n",
                            write_termination="\n")
    return port, res


def test_lease_takes_serial_before_visa_and_allows_transactions_inside(pair: Pair) -> None:
    port, res = pair
    with lease([res, port], owner="scan") as held:
        assert [g.name for g in held.gates] == [port.gate.name, res.gate.name]
        assert held_resources() == [port.gate.name, res.gate.name]
        assert port.query(b"Q1\n", terminator=b"\n") == b"R1"  # no self-deadlock
        assert res.query("Q1?") == "R1"
    assert held_resources() == []


def test_checker_catches_acquisition_against_the_order(pair: Pair,
                                                      checker: LockOrderChecker) -> None:
    port, res = pair
    with res.lease(owner="dmm-scan"):
        with pytest.raises(LockOrderError) as info:
            port.query(b"Q1\n", terminator=b"\n", owner="dmm-scan")
    text = str(info.value)
    assert f"asked for {port.gate.name} while holding {res.gate.name}" in text
    assert "'dmm-scan' holds [" in text and f"{port.gate.name} is free" in text
    assert checker.violations == 1
    # the same two resources in one lease are fine
    with lease([res, port], owner="dmm-scan"):
        pass


def test_checker_sees_what_an_inline_transaction_holds(pair: Pair,
                                                      checker: LockOrderChecker) -> None:
    """A transaction's function asking for a resource that orders first is refused at once."""
    port, res = pair
    seen: list[list[str]] = []

    def scan(session: object) -> None:
        seen.append(held_resources())
        port.query(b"Q1\n", terminator=b"\n", owner="dmm-scan")

    with pytest.raises(LockOrderError, match=rf"asked for {port.gate.name} while holding "
                                             rf"{res.gate.name}"):
        res.transaction(scan, owner="dmm-scan")
    assert seen == [[res.gate.name]] and held_resources() == []
    assert checker.violations == 1
    # in the order (serial transaction, VISA inside it) is fine, and both are released after
    inner = port.transaction(
        lambda io: res.transaction(lambda s: (held_resources(), s.query("Q2?"))), owner="scan")
    assert inner == ([port.gate.name, res.gate.name], "R2")
    assert held_resources() == []


def test_checker_names_the_other_holder(pair: Pair,
                                        checker: LockOrderChecker) -> None:
    port, res = pair
    held = threading.Event()
    done = threading.Event()

    def other() -> None:
        with port.lease(owner="rotator"):
            held.set()
            done.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert held.wait(5)
    try:
        with res.lease(owner="dmm-scan"), pytest.raises(LockOrderError,
                                                        match=r"is held by 'rotator'"):
            port.transaction(lambda io: None, owner="dmm-scan")
    finally:
        done.set()
        t.join(5)


def test_async_lease_and_checker(pair: Pair, checker: LockOrderChecker) -> None:
    port, res = pair

    async def main() -> None:
        async with lease([port, res], owner="v4-scan"):
            assert await port.aquery(b"Q5\n", terminator=b"\n") == b"R5"
            assert await res.aquery("Q5?") == "R5"
        async with res.lease(owner="v4-scan"):
            with pytest.raises(LockOrderError):
                await port.aquery(b"Q6\n", terminator=b"\n")

    asyncio.run(main())
    assert checker.violations == 1


def test_lease_timeout_releases_what_it_held(pair: Pair) -> None:
    port, res = pair
    held = threading.Event()
    done = threading.Event()

    def other() -> None:
        with res.lease(owner="dmm"):
            held.set()
            done.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert held.wait(5)
    try:
        with pytest.raises(ResourceTimeoutError) as info:
            with lease([port, res], owner="scan", timeout=0.2):
                pass
        text = str(info.value)
        assert "held by 'dmm' for 0." in text and f"holding [{res.gate.name}]" in text
        assert f"the lease released what it already held: [{port.gate.name}]" in text
        assert port.query(b"Q2\n", terminator=b"\n", timeout=0.5) == b"R2"  # really released
    finally:
        done.set()
        t.join(5)


def test_dump_lists_holder_and_waiters(pair: Pair) -> None:
    port, res = pair
    held = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with lease([port, res], owner="scan"):
            held.set()
            done.wait(5)

    waiters = [threading.Thread(target=lambda: port.query(b"Q3\n", terminator=b"\n",
                                                          owner="poller", timeout=5)),
               threading.Thread(target=lambda: res.query("Q3?", owner="dmm", timeout=5))]
    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(5)
    for w in waiters:
        w.start()
    wait_until(lambda: (port.gate.queue_depth, res.gate.queue_depth) == (1, 1),
               "one waiter queued on each gate", timeout=5, every=0.002)
    text = dump_gates([port.gate, res.gate])
    done.set()
    t.join(5)
    for w in waiters:
        w.join(5)
    assert f"{port.gate.name} order=(0," in text and f"{res.gate.name} order=(1," in text
    assert text.index(port.gate.name) < text.index(res.gate.name)
    assert "holder: 'scan' for" in text
    assert "waiting: 'poller' transaction for" in text
    assert "waiting: 'dmm' transaction for" in text
    assert "connected at" in text
