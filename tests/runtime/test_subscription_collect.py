"""A consumer that gathers a window's items at once (the bridge, a worker's pump) is not
woken by each item, yet never holds up producers of a full queue, nor a closing."""

from __future__ import annotations

import threading
import time

import pytest

from daqhub.runtime.broadcast import Subscription


def collecting(sub: Subscription[int], timeout: float, enough: int = 0,
               started: threading.Event | None = None) -> tuple[threading.Thread, list[float]]:
    """A thread collecting for ``timeout``; the list gets how long its collect took."""
    took: list[float] = []

    def main() -> None:
        t0 = time.monotonic()
        if started is not None:
            started.set()
        sub.collect(timeout, enough)
        took.append(time.monotonic() - t0)
    thread = threading.Thread(target=main)
    thread.start()
    return thread, took


@pytest.mark.timeout(30)
def test_items_offered_meanwhile_do_not_end_the_window_early() -> None:
    sub: Subscription[int] = Subscription("bridge", lossless=True, capacity=100)
    window = 0.3
    thread, took = collecting(sub, window)
    for i in range(5):  # the first of these goes into an empty queue and wakes the consumer
        assert sub.offer(i, 1.0)
    thread.join(10)
    assert not thread.is_alive()
    assert took[0] >= window, "collect returned when an item arrived, before its window ended"
    assert sub.get_many(0.0) == [0, 1, 2, 3, 4]


@pytest.mark.timeout(30)
def test_a_full_queue_ends_the_window_and_its_blocked_producer_goes_on() -> None:
    sub: Subscription[int] = Subscription("bridge", lossless=True, capacity=3)
    thread, _ = collecting(sub, 60.0)
    for i in range(3):
        assert sub.offer(i, 1.0)
    thread.join(10)  # well before the window's 60 s: the queue is full
    assert not thread.is_alive(), "a full lossless queue did not end the consumer's window"
    taken: list[bool] = []
    producer = threading.Thread(target=lambda: taken.append(sub.offer(3, 10.0)))
    producer.start()  # blocked until the consumer takes
    assert sub.get_many(0.0) == [0, 1, 2]
    producer.join(10)
    assert taken == [True] and sub.get_many(0.0) == [3]


@pytest.mark.timeout(30)
def test_closing_ends_the_window() -> None:
    sub: Subscription[int] = Subscription("bridge", lossless=True, capacity=10)
    thread, _ = collecting(sub, 60.0)
    sub.close()
    thread.join(10)
    assert not thread.is_alive(), "closing the subscription did not end the window"


@pytest.mark.timeout(30)
def test_a_window_closed_midway_still_delivers_what_it_took() -> None:
    sub: Subscription[int] = Subscription("bridge", lossless=True, capacity=10)
    got: list[list[int]] = []
    thread = threading.Thread(target=lambda: got.append(
        sub.get_window(10.0, 60.0, threading.Event())))
    assert sub.offer(1, 1.0)
    thread.start()
    sub.close()  # during the window (or before it): the item taken is not lost
    thread.join(10)
    assert not thread.is_alive() and got == [[1]]


@pytest.mark.timeout(30)
def test_enough_items_end_the_window_and_fewer_do_not() -> None:
    sub: Subscription[int] = Subscription("bridge", lossless=True, capacity=100)
    thread, took = collecting(sub, 0.3, enough=10)
    for i in range(9):  # one short of enough: the window runs to its end
        assert sub.offer(i, 1.0)
    thread.join(10)
    assert took[0] >= 0.3, "collect returned before enough items were queued"
    assert len(sub.get_many(0.0)) == 9

    for i in range(2):  # queued before the window: the queue is not empty when the third
        assert sub.offer(i, 1.0)  # comes, so only reaching enough can wake the consumer
    started = threading.Event()
    thread, took = collecting(sub, 60.0, enough=3, started=started)
    assert started.wait(10)
    assert sub.offer(2, 1.0)
    thread.join(10)  # well before the window's 60 s
    assert not thread.is_alive(), "3 queued items did not end a window waiting for 3"


@pytest.mark.timeout(30)
def test_a_window_that_took_enough_with_its_first_items_does_not_wait() -> None:
    sub: Subscription[int] = Subscription("bridge", lossless=True, capacity=100)
    for i in range(4):
        assert sub.offer(i, 1.0)
    got: list[list[int]] = []
    thread = threading.Thread(target=lambda: got.append(
        sub.get_window(10.0, 60.0, threading.Event(), enough=4)))
    thread.start()
    thread.join(10)  # not the window's 60 s
    assert not thread.is_alive() and got == [[0, 1, 2, 3]]


@pytest.mark.timeout(60)
def test_the_bridge_passes_many_row_reads_on_before_its_window_ends() -> None:
    """A fast source's 5,000-row reads are converted as they come, not held for the window
    (rows left waiting went cold in the cache; see bridge.ROWS_PER_WAKE)."""
    from daqhub.measurement import ChannelSpec, Measurement, Scalar
    from daqhub.plugins.converters import rows_to_batch
    from daqhub.runtime.bridge import MeasurementBridge
    from daqhub.runtime.broadcast import Broadcast

    spec = ChannelSpec("x", "scalar", "V", "float64")
    v2: Broadcast[object] = Broadcast("v2")
    window = 6.0
    bridge = MeasurementBridge({("src", "x"): spec}, v2, rows_to_batch,  # type: ignore[arg-type]
                               window_s=window)
    out = bridge.unified.subscribe("test", lossless=True)
    bridge.start()

    def read(start: int) -> tuple[str, list[Measurement]]:
        return ("src", [Measurement("src", "x", start + i, Scalar(float(i), "V"))
                        for i in range(5000)])
    try:
        v2.publish(read(0))  # the first window learns how many rows a read brings
        first = out.get_many(window + 10)
        assert sum(b.num_rows for b in first) == 5000
        t0 = time.monotonic()
        v2.publish(read(5000))
        second = out.get_many(window + 10)
        assert sum(b.num_rows for b in second) == 5000
        assert time.monotonic() - t0 < window / 2, "the second read waited out the window"
    finally:
        bridge.stop(5)
        bridge.close()

