"""The v4 loop's selector: what a zero-timeout pass reports, and that it keeps the GIL."""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from daqhub.runtime import loopselect
from daqhub.runtime.loopselect import LoopPasses

S = TypeVar("S", bound=selectors.BaseSelector)

pytestmark = pytest.mark.skipif(not loopselect.KEEPS_GIL,
                                reason="epoll_wait cannot be called keeping the GIL here")


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


@pytest.fixture
def closing() -> Iterator[Callable[[S], S]]:
    """Closes every selector it was given when the test ends (each holds an epoll fd)."""
    made: list[selectors.BaseSelector] = []

    def close_later(sel: S) -> S:
        made.append(sel)
        return sel
    yield close_later
    for sel in made:
        sel.close()


def ready(sel: selectors.BaseSelector) -> set[tuple[int, int]]:
    return {(key.fd, events) for key, events in sel.select(0)}


def test_a_zero_timeout_pass_reports_what_the_standard_selector_reports(pairs, closing
                                                                       ) -> None:
    ours, stock = closing(LoopPasses()), closing(selectors.EpollSelector())
    for _ in range(4):
        pairs.append(socket.socketpair())
    (idle, _), (readable, feeder), (writable, _), (hung_up, peer) = pairs
    feeder.send(b"x")
    peer.close()
    for sel in (ours, stock):
        sel.register(idle, selectors.EVENT_READ, "idle")
        sel.register(readable, selectors.EVENT_READ | selectors.EVENT_WRITE, "readable")
        sel.register(writable, selectors.EVENT_WRITE, "writable")
        sel.register(hung_up, selectors.EVENT_READ, "hung up")
    got = ready(ours)
    assert got == ready(stock)
    assert got == {(readable.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE),
                   (writable.fileno(), selectors.EVENT_WRITE),
                   (hung_up.fileno(), selectors.EVENT_READ)}
    assert {key.data for key, _ in ours.select(0)} == {"readable", "writable", "hung up"}
    assert ours.passes == 2


def test_more_ready_than_one_pass_takes_are_reported_on_the_next(pairs, closing) -> None:
    sel = closing(LoopPasses())
    for _ in range(loopselect.MAX_EVENTS + 20):
        a, b = socket.socketpair()
        pairs.append((a, b))
        b.send(b"x")
        sel.register(a, selectors.EVENT_READ)
    first = ready(sel)
    assert len(first) == loopselect.MAX_EVENTS
    assert first | ready(sel) == {(a.fileno(), selectors.EVENT_READ) for a, _ in pairs}


def test_a_pass_that_may_wait_still_waits_and_wakes() -> None:
    loop = asyncio.SelectorEventLoop(LoopPasses())
    try:
        woke = loop.run_until_complete(asyncio.wait_for(asyncio.sleep(0.01, "woke"), 5))
    finally:
        loop.close()
    assert woke == "woke"


def passes_until_another_thread_runs(sel: selectors.BaseSelector, limit: int) -> int | None:
    """Zero-timeout passes this thread made before a thread waiting for the GIL got it
    (None: it never did). The switch interval is made long, so the waiting thread gets the
    GIL only where this one lets go of it."""
    go = threading.Event()
    ran: list[bool] = []

    def other() -> None:
        go.wait(5)
        ran.append(True)
    thread = threading.Thread(target=other)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        thread.start()
        go.set()  # from here on the other thread wants the GIL, which this one holds
        for i in range(limit):
            sel.select(0)
            if ran:
                return i + 1
        return None
    finally:
        sys.setswitchinterval(interval)
        thread.join(5)


def test_a_busy_loop_keeps_the_gil_where_a_standard_one_hands_it_over(closing) -> None:
    # the standard selector lets go on every pass: the waiting thread soon wins one
    # (measured: within 17-35 passes); ours never lets go, so the waiter must wait for
    # its switch interval, as next to any thread that computes
    stock, ours = closing(selectors.EpollSelector()), closing(LoopPasses())
    assert passes_until_another_thread_runs(stock, 200_000) is not None
    assert passes_until_another_thread_runs(ours, 20_000) is None
