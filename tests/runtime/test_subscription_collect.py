"""A consumer that gathers a window's items at once (the bridge, a worker's pump) is not
woken by each item, yet never holds up producers of a full queue, nor a closing."""

from __future__ import annotations

import threading
import time

import pytest

from daqhub.runtime.broadcast import Subscription


def collecting(sub: Subscription[int], timeout: float) -> tuple[threading.Thread, list[float]]:
    """A thread collecting for ``timeout``; the list gets how long its collect took."""
    took: list[float] = []

    def main() -> None:
        t0 = time.monotonic()
        sub.collect(timeout)
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
