"""Producers offer to a subscription without its lock while there is room: no item is lost,
doubled or reordered, a waiting consumer is always woken, a close never swallows an item, and a
consumer holding the lock never holds a producer up."""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from daqhub.runtime.broadcast import Subscription, SubscriptionClosed

PRODUCERS = 4
PER_PRODUCER = 20_000


@pytest.fixture(autouse=True)
def switch_often() -> Iterator[None]:
    """Threads switched every 10 us instead of 5 ms, so that the races looked for here
    (between two bytecodes of a producer and of the consumer) happen often."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def produce(sub: Subscription[tuple[int, int]], who: int, results: list[bool],
            start: threading.Barrier) -> None:
    start.wait(10)
    for i in range(PER_PRODUCER):
        while not sub.offer((who, i), 1.0):
            pass  # a lossless queue stayed full for a second: offer again
    results.append(True)


def check_complete(got: list[tuple[int, int]]) -> None:
    """Every producer's items arrived once each, in the order it offered them."""
    by_producer: dict[int, list[int]] = {}
    for who, i in got:
        by_producer.setdefault(who, []).append(i)
    assert sorted(by_producer) == list(range(PRODUCERS))
    for who, seq in by_producer.items():
        assert seq == list(range(PER_PRODUCER)), f"producer {who}'s items lost or reordered"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("capacity", [4, 1000, 1_000_000])
def test_many_producers_lose_nothing_and_always_wake_the_consumer(capacity: int) -> None:
    sub: Subscription[tuple[int, int]] = Subscription("s", lossless=True, capacity=capacity)
    start = threading.Barrier(PRODUCERS + 1)
    done: list[bool] = []
    threads = [threading.Thread(target=produce, args=(sub, w, done, start))
               for w in range(PRODUCERS)]
    for t in threads:
        t.start()
    got: list[tuple[int, int]] = []
    slowest = 0.0  # the longest get_many that came back with items
    deepest = 0
    start.wait(10)
    # until everything came, or nothing more can come (then check_complete says what is lost)
    while len(got) < PRODUCERS * PER_PRODUCER and not (len(done) == PRODUCERS
                                                      and sub.depth() == 0):
        deepest = max(deepest, sub.depth())
        t0 = time.monotonic()
        items = sub.get_many(20.0, max_items=333)
        if items:
            slowest = max(slowest, time.monotonic() - t0)
        got += items
    for t in threads:
        t.join(10)
    assert len(done) == PRODUCERS
    check_complete(got)
    # items were there to take, yet the consumer slept out its 20 s: a wake-up was lost
    assert slowest < 10.0, f"a get_many waited {slowest:.1f} s for items offered meanwhile"
    # producers racing for the last place may each add one item beyond the capacity
    assert deepest <= capacity + PRODUCERS - 1
    assert sub.stats().delivered == PRODUCERS * PER_PRODUCER


@pytest.mark.timeout(120)
@pytest.mark.parametrize("enough", [0, 1, 3])
def test_a_waiting_consumer_is_woken_by_the_item_it_waits_for(enough: int) -> None:
    """Items offered one batch at a time, each after the consumer took the one before: the
    consumer waits (``get_many``, or ``collect`` for ``enough`` items) for every batch, so a
    lost wake-up leaves it asleep for its whole 20 s."""
    sub: Subscription[int] = Subscription("s", lossless=True, capacity=100)
    batch = max(enough, 1)
    rounds = 2000
    taken = threading.Semaphore(0)
    slowest: list[float] = [0.0]
    got: list[int] = []

    def consume() -> None:
        for _ in range(rounds):
            t0 = time.monotonic()
            if enough:
                sub.collect(20.0, enough)
            items = sub.get_many(20.0)
            while len(items) < batch:
                items += sub.get_many(20.0)
            slowest[0] = max(slowest[0], time.monotonic() - t0)
            got.extend(items)
            taken.release()
    consumer = threading.Thread(target=consume)
    consumer.start()
    for r in range(rounds):
        for i in range(batch):
            sub.offer(r * batch + i, 1.0)
        assert taken.acquire(timeout=60), f"round {r}: the consumer never took its items"
    consumer.join(10)
    assert got == list(range(rounds * batch))
    assert slowest[0] < 10.0, f"a consumer slept {slowest[0]:.1f} s on items it waited for"


@pytest.mark.timeout(120)
def test_an_offer_racing_a_close_is_either_delivered_or_refused() -> None:
    for _ in range(300):
        sub: Subscription[int] = Subscription("s", lossless=True, capacity=10_000)
        accepted: list[int] = []
        refused: list[int] = []
        go = threading.Event()

        def offer_all(s: Subscription[int] = sub, ok: list[int] = accepted,
                      no: list[int] = refused, g: threading.Event = go) -> None:
            g.wait(10)
            for i in range(200):
                try:
                    s.offer(i, 1.0)
                    ok.append(i)
                except SubscriptionClosed:
                    no.append(i)
        producer = threading.Thread(target=offer_all)
        producer.start()
        go.set()
        time.sleep(0)  # let the producer start: the close should land among its offers
        sub.close()
        got: list[int] = []
        while True:
            try:
                got += sub.get_many(0.0)
            except SubscriptionClosed:
                break
        producer.join(10)
        assert not producer.is_alive()
        with pytest.raises(SubscriptionClosed):  # nothing was left behind after the drain
            sub.get_many(0.0)
        assert got == accepted, "an offer that returned True was not delivered"
        assert sorted(accepted + refused) == list(range(200))


@pytest.mark.timeout(30)
def test_an_offer_overtaken_by_the_close_is_refused_and_not_left_queued() -> None:
    # the queue closes between the offer's look at it and its append (forced here, as the
    # GIL could switch threads there)
    sub: Subscription[int] = Subscription("s", lossless=True, capacity=10)

    class ClosingFirst(collections.deque[int]):
        def append(self, item: int) -> None:
            sub.close()
            super().append(item)
    sub._items = ClosingFirst()
    with pytest.raises(SubscriptionClosed):
        sub.offer(1, 1.0)
    with pytest.raises(SubscriptionClosed):  # closed and empty: the item was withdrawn
        sub.get_many(0.0)


@pytest.mark.timeout(30)
def test_a_consumer_holding_the_lock_does_not_hold_producers_up() -> None:
    # the lock held here stands in for a consumer the GIL switched out while it held it
    sub: Subscription[int] = Subscription("s", lossless=True, capacity=100)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sub._lock:
            held.set()
            release.wait(20)
    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    offered = threading.Event()
    producer = threading.Thread(target=lambda: (sub.offer(1, 1.0), offered.set()))
    producer.start()
    try:
        assert offered.wait(10), "an offer with room waited for the consumer's lock"
    finally:
        release.set()
        holder.join(10)
        producer.join(10)
    assert sub.get_many(0.0) == [1]
