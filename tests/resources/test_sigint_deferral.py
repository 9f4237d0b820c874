"""Ctrl-C never splits a command from its reply (main thread, where CPython delivers SIGINT)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from resources_fakes import PtyDevice

from daqhub.resources import PortIO, SerialPortManager
from daqhub.resources.sigint import SIGINT_GUARD

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(autouse=True)
def _main_thread_only() -> Iterator[None]:
    assert threading.current_thread() is threading.main_thread()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a transaction leaves the guard
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_interrupt_inside_a_transaction_waits_for_the_reply(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    port = serial_mgr.port(pty_device().path)
    seen: list[bytes] = []

    def fn(io: PortIO) -> bytes:
        io.write(b"Q1\n")
        signal.raise_signal(signal.SIGINT)  # Ctrl-C between the command and its reply
        reply = io.read_until(b"\n")
        seen.append(reply)
        return reply

    with pytest.raises(KeyboardInterrupt):
        port.transaction(fn)
    assert seen == [b"R1\n"]  # the reply was read before the interrupt was honoured
    assert port.query(b"Q2\n", terminator=b"\n") == b"R2"  # nothing left on the line, gate free
    with pytest.raises(KeyboardInterrupt):  # between transactions: at once, as before them
        signal.raise_signal(signal.SIGINT)


def test_interrupt_from_outside_while_blocked_on_a_slow_reply(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    def slow(line: bytes) -> bytes:
        time.sleep(0.3)  # the device takes its time
        return b"R" + line[1:] + b"\n"

    port = serial_mgr.port(pty_device(on_request=slow).path, read_timeout=2.0)
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            port.query(b"Q7\n", terminator=b"\n")
    finally:
        timer.cancel()
    assert time.monotonic() - start >= 0.25  # honoured only once the reply was in
    assert port.query(b"Q8\n", terminator=b"\n") == b"R8"  # not R7: the reply was consumed


def test_interrupt_while_queued_withdraws_the_request(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    dev = pty_device()
    port = serial_mgr.port(dev.path)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with port.lease(owner="scan", timeout=2):
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(5)
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            port.query(b"Q9\n", terminator=b"\n", timeout=3.0)
        assert time.monotonic() - start < 1.0  # honoured at once, not after the 3 s wait
        assert port.gate.queue_depth == 0
    finally:
        timer.cancel()
        release.set()
        t.join(5)
    assert port.query(b"Q10\n", terminator=b"\n") == b"R10"
    assert dev.requests == [b"Q10"]  # the interrupted request was never sent


def test_the_deferring_handler_put_back_outside_a_transaction_still_interrupts(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    """Code that saved the handler during a transaction and restores it later must not make
    Ctrl-C vanish: outside a transaction nobody would raise the deferred interrupt."""
    port = serial_mgr.port(pty_device().path)
    saved = port.transaction(lambda io: signal.getsignal(signal.SIGINT))
    assert saved is not signal.default_int_handler  # the guard's, seen from inside
    signal.signal(signal.SIGINT, saved)
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_handler_installed_between_transactions_gets_the_interrupts(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    port = serial_mgr.port(pty_device().path)
    assert port.query(b"Q1\n", terminator=b"\n") == b"R1"
    calls: list[str] = []
    signal.signal(signal.SIGINT, lambda signum, frame: calls.append("handler"))
    signal.raise_signal(signal.SIGINT)  # outside a transaction: the program's handler, at once
    assert calls == ["handler"]

    def fn(io: PortIO) -> bytes:
        io.write(b"Q2\n")
        signal.raise_signal(signal.SIGINT)
        calls.append("still in the transaction")
        return io.read_until(b"\n")

    assert port.transaction(fn) == b"R2\n"
    assert calls == ["handler", "still in the transaction", "handler"]  # deferred to the end


@pytest.mark.parametrize("action", [signal.SIG_IGN, signal.SIG_DFL])
def test_the_kernels_own_actions_are_put_back_after_each_transaction(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice], action: Any) -> None:
    port = serial_mgr.port(pty_device().path)
    signal.signal(signal.SIGINT, action)
    assert port.transaction(lambda io: signal.getsignal(signal.SIGINT)) is not action
    assert signal.getsignal(signal.SIGINT) == action


def test_the_guard_stays_between_transactions(
        serial_mgr: SerialPortManager, pty_device: Callable[..., PtyDevice]) -> None:
    """Installing a handler is a sigaction system call: swapping the guard in and out around
    every transaction cost more than the rest of the gate (see daqhub.resources.sigint)."""
    port = serial_mgr.port(pty_device().path)
    for n in range(3):
        assert port.query(b"Q%d\n" % n, terminator=b"\n") == b"R%d" % n
        assert signal.getsignal(signal.SIGINT) is SIGINT_GUARD.handler
