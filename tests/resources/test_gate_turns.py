"""Turns on a shared gate: threads and coroutines served in arrival order, whatever the GIL does.

The switch interval is raised to seconds in these tests, so the GIL alone would never let an
event loop's thread in while a V2 thread keeps running: whatever order comes out is the gate's.
The interleavings are forced with events (the gate's enqueue reports each arrival).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from daqhub.resources.gate import Gate
from daqhub.resources.ordering import SERIAL_ORDER
from daqhub.resources.stats import TransactionStats

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate("serial:turns", (SERIAL_ORDER, "turns"))
    yield g
    assert g.close(2)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, like the V4 runtime's."""
    lp = asyncio.new_event_loop()
    t = threading.Thread(target=lp.run_forever, name="test-loop")
    t.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    t.join(5)
    lp.close()


@pytest.fixture
def gil_never_switches() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    yield
    sys.setswitchinterval(interval)


def arrivals(gate: Gate, *owners: str) -> dict[str, threading.Event]:
    """Events set once a request of the given owner is in the gate's queue."""
    queued = {owner: threading.Event() for owner in owners}
    enqueue = gate._enqueue_locked

    def reporting(entry: Any) -> None:
        enqueue(entry)
        if entry.owner in queued:
            queued[entry.owner].set()

    gate._enqueue_locked = reporting  # type: ignore[method-assign]
    return queued


class Turns:
    """Records the order transactions ran in; ``hold`` keeps the gate until ``finish``."""

    def __init__(self) -> None:
        self.stats = TransactionStats()
        self.order: list[str] = []
        self.inside, self.finish = threading.Event(), threading.Event()

    def hold(self, name: str) -> str:
        self.inside.set()
        assert self.finish.wait(5)
        return self.record(name)

    def record(self, name: str) -> str:
        self.order.append(name)
        return name


def test_threads_and_coroutines_queued_get_turns_in_arrival_order(
        gate: Gate, loop: asyncio.AbstractEventLoop) -> None:
    turns = Turns()
    stats, record, inside, finish = turns.stats, turns.record, turns.inside, turns.finish
    holder = threading.Thread(target=gate.run, args=(turns.hold, "holder", "holder", "hold", 2.0,
                                                     False, stats))
    holder.start()
    assert inside.wait(5)
    queued = arrivals(gate, "t1", "c1", "t2", "c2", "t3")
    results: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    for name in ("t1", "c1", "t2", "c2", "t3"):
        if name.startswith("t"):
            def v2(name: str = name) -> None:
                results[name] = gate.run(record, name, name, "q", 5.0, False, stats)
            threads.append(threading.Thread(target=v2))
            threads[-1].start()
        else:
            results[name] = asyncio.run_coroutine_threadsafe(
                gate.arun(record, name, name, "q", 5.0, False, stats), loop)
        assert queued[name].wait(5), f"{name} never queued"
    finish.set()
    holder.join(5)
    for t in threads:
        t.join(5)
    for name in ("c1", "c2"):
        fut: Future[str] = results[name]
        results[name] = fut.result(5)
    assert turns.order == ["holder", "t1", "c1", "t2", "c2", "t3"]
    assert results == {n: n for n in ("t1", "c1", "t2", "c2", "t3")}


def run_in_thread(fn: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=fn)
    t.start()
    return t


def test_a_coroutine_served_by_a_thread_asks_again_before_that_thread(
        gate: Gate, loop: asyncio.AbstractEventLoop, gil_never_switches: None) -> None:
    """The thread that ran a coroutine's request (combining) does not take the next turn back."""
    turns = Turns()
    stats, record, inside, finish = turns.stats, turns.record, turns.inside, turns.finish

    def v2() -> None:
        gate.run(turns.hold, "v2", "v2", "hold", 2.0, False, stats)  # serves the queued c1 next
        gate.run(record, "v2 next", "v2", "q", 5.0, False, stats)

    async def v4() -> None:
        await gate.arun(record, "c1", "v4", "q", 5.0, False, stats)
        await gate.arun(record, "c2", "v4", "q", 5.0, False, stats)

    t = run_in_thread(v2)
    assert inside.wait(5)
    queued = arrivals(gate, "v4")
    done = asyncio.run_coroutine_threadsafe(v4(), loop)
    assert queued["v4"].wait(5)
    finish.set()
    t.join(10)
    done.result(10)
    assert turns.order == ["v2", "c1", "c2", "v2 next"]


def test_a_due_loop_gets_its_turn_before_a_thread_running_back_to_back(
        gate: Gate, loop: asyncio.AbstractEventLoop, gil_never_switches: None) -> None:
    """A loop with work due (here a callback posted to it) queues its request first."""
    turns = Turns()
    stats, record, order = turns.stats, turns.record, turns.order
    go: asyncio.Event | None = None
    used = threading.Event()

    async def v4() -> None:
        nonlocal go
        go = asyncio.Event()
        await gate.arun(record, "c0", "v4", "q", 5.0, False, stats)  # the loop uses the gate
        used.set()
        await go.wait()
        await gate.arun(record, "c1", "v4", "q", 5.0, False, stats)

    done = asyncio.run_coroutine_threadsafe(v4(), loop)
    assert used.wait(5)
    # the loop's thread is kept busy outside the GIL until the V2 transaction below has posted
    # to it, so that it cannot slip in while that posting writes to its pipe
    loop_blocked, unblock = threading.Event(), threading.Event()

    def busy() -> None:
        loop_blocked.set()
        assert unblock.wait(5)

    loop.call_soon_threadsafe(busy)
    assert loop_blocked.wait(5)

    def wake_the_loop(_: object) -> str:
        assert go is not None
        loop.call_soon_threadsafe(go.set)  # the loop has work due ...
        unblock.set()  # ... and its thread now waits for the GIL
        order.append("v2")
        return "v2"

    def v2() -> None:
        gate.run(wake_the_loop, None, "v2", "q", 5.0, False, stats)
        gate.run(record, "v2 next", "v2", "q", 5.0, False, stats)

    t = run_in_thread(v2)
    t.join(10)
    done.result(10)
    assert order == ["c0", "v2", "c1", "v2 next"]
