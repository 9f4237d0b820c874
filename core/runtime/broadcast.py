"""Fan-out of data to subscribers, each with its own bounded queue and loss policy.

Storage must never lose a sample, so a *lossless* subscriber applies
backpressure: a producer whose item does not fit waits (bounded slices, an
alarm raised while it waits) rather than dropping. A live view would rather
show fresh data than old, so a *lossy* subscriber drops its oldest items and
counts them; it never slows anyone down. One slow subscriber only affects
producers if it is lossless, and then visibly.

Producers may be threads (V2) or coroutines on the V4 loop; ``apublish`` keeps
the event loop free while a lossless subscriber is full.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: a busy stream wakes each of its consumers at most this often from the event loop: a thread
#: wake-up and GIL hand-over per few batches cost the loop more than the batches themselves
WAKE_EVERY_S = 0.002


class SubscriptionClosed(Exception):
    """Reading from (or publishing to) a subscription that was closed."""


@dataclass
class SubscriberStats:
    name: str
    lossless: bool
    capacity: int
    depth: int
    delivered: int
    dropped: int
    blocked_s: float
    alarms: int
    alarm_active: bool


class Subscription(Generic[T]):
    """One subscriber's bounded queue."""

    def __init__(self, name: str, *, lossless: bool, capacity: int = 1000,
                 on_alarm: Callable[[str, str], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("a subscription holds at least one item")
        self.name = name
        self.lossless = lossless
        self.capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        # held as ``with self._lock`` (C) rather than ``with self._cond`` (a Python-level
        # __enter__/__exit__ pair per item); reentrant, as a Condition's own lock is
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._on_alarm = on_alarm
        self.delivered = 0
        self.dropped = 0
        self.blocked_s = 0.0
        self.alarms = 0
        self.alarm_active = False
        self._want = 0  # the queue depth the waiting consumer waits for (0: it does not wait)

    # --- producer side ------------------------------------------------------------

    def offer(self, item: T, timeout: float, wake: bool = True) -> bool:
        """Queue ``item``; for a lossless subscriber wait up to ``timeout`` for room.

        Returns False only when a lossless subscriber stayed full for the whole
        timeout (the caller decides whether to wait again or give up loudly).
        ``wake=False``: the caller wakes the consumer itself soon (:meth:`wake`), once for
        several items.

        While there is room the item is appended without the lock (one deque append, atomic
        under the GIL; ``daqhub/resources/gil.py`` lists this with the other places that rely
        on it). Taking the lock here made every producer wait for a consumer that the GIL
        had switched out while it held it, and then wait a switch interval more for the GIL
        back: two v2 meters polling flat out made 8,300 polls/s through the bridge's queue,
        11,800 without. Producers racing for the last place may overfill the queue by one
        item each; the consumer is woken under the lock, only when it waits for that many.
        """
        items = self._items
        if len(items) < self.capacity and not self._closed:
            items.append(item)
            if self._closed:
                self._withdraw(item)
        elif not self._offer_locked(item, timeout):
            return False
        if wake and 0 < self._want <= len(items):
            self.wake()
        return True

    def _offer_locked(self, item: T, timeout: float) -> bool:
        """:meth:`offer` when the queue is full or closed: drop the oldest item (lossy) or
        wait for room (lossless, False when none came within ``timeout``), then append."""
        items = self._items
        with self._lock:
            if self._closed:
                raise SubscriptionClosed(f"subscriber {self.name!r} is closed")
            if len(items) >= self.capacity:
                if not self.lossless:
                    items.popleft()
                    self.dropped += 1
                else:
                    start = time.monotonic()
                    self._raise_alarm()
                    self._want = 0
                    self._cond.notify_all()  # items offered with wake=False: make room now
                    deadline = start + timeout
                    while len(items) >= self.capacity and not self._closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self.blocked_s += time.monotonic() - start
                            return False
                        self._cond.wait(left)
                    self.blocked_s += time.monotonic() - start
                    if self._closed:
                        raise SubscriptionClosed(f"subscriber {self.name!r} is closed")
            items.append(item)
            return True

    def wake(self) -> None:
        """Wake the consumer if it waits for the queue to hold ``_want`` items: items offered
        with ``wake=False``, or an offer that found it waiting (it published that number
        under the lock before it looked at the queue and waited, so a producer that appended
        after the look sees the number and wakes it here)."""
        with self._lock:
            if 0 < self._want <= len(self._items):
                self._want = 0
                self._cond.notify_all()

    def _withdraw(self, item: T) -> None:
        """``item`` was appended while the subscription closed: take it back if the consumer
        has not taken it, and say it was not delivered (as an offer after the close does)."""
        with self._lock:
            for i, queued in enumerate(self._items):
                if queued is item:
                    del self._items[i]
                    raise SubscriptionClosed(f"subscriber {self.name!r} is closed")

    def _raise_alarm(self) -> None:
        if not self.alarm_active:
            self.alarm_active = True
            self.alarms += 1
            if self._on_alarm:
                self._on_alarm(self.name, f"subscriber {self.name!r} is full ({self.capacity} "
                                          "items): producers are being slowed down")

    # --- consumer side ------------------------------------------------------------

    def get_many(self, timeout: float, max_items: int = 10_000) -> list[T]:
        """Up to ``max_items`` queued items, waiting up to ``timeout`` for the first."""
        items = self._items
        with self._lock:
            if not items and not self._closed:
                self._want = 1
                if not items:  # looked at again after publishing the wish (see offer)
                    self._cond.wait(timeout)
                self._want = 0
            # taken one by one: a producer may append meanwhile (list() then clear() lost it)
            popleft = items.popleft
            out = [popleft() for _ in range(min(len(items), max_items))]
            if out:
                self.delivered += len(out)
                if self.alarm_active and len(items) < self.capacity // 2:
                    self.alarm_active = False
                self._cond.notify_all()
            elif self._closed:
                raise SubscriptionClosed(f"subscriber {self.name!r} is closed")
            return out

    def collect(self, timeout: float, enough: int = 0) -> None:
        """Let items gather for ``timeout``: return early only when the queue holds ``enough``
        items (0: when it is full) or is closed.

        For a consumer that takes a window's items at once (the bridge, a worker's pump):
        waiting in :meth:`get_many` meanwhile, it was woken by every item offered after it
        had emptied the queue, and each wake-up is a GIL hand-over from the producing thread
        (the bridge woke 1,900 times a second beside two v2 meters polling flat out). A
        producer wakes a consumer only when the queue reaches the depth the consumer waits
        for (one item in :meth:`get_many`, ``enough`` here), so while the items gather here
        only that wakes it.
        """
        deadline = time.monotonic() + timeout
        limit = min(enough, self.capacity) if enough > 0 else self.capacity
        items = self._items
        with self._lock:
            try:
                while not self._closed:
                    self._want = limit  # published before the look (see offer)
                    left = deadline - time.monotonic()
                    if len(items) >= limit or left <= 0:
                        return
                    self._cond.wait(left)
            finally:
                self._want = 0

    def get_window(self, timeout: float, window_s: float, stop: threading.Event,
                   enough: int = 0) -> list[T]:
        """One window's items: up to ``timeout`` for the first, then whatever gathers in
        ``window_s`` more (see :meth:`collect`), unless ``stop`` is set or ``enough`` items
        (0: no such bound) are taken. Raises :class:`SubscriptionClosed` only when closed
        with nothing taken."""
        items = self.get_many(timeout)
        more = enough - len(items) if enough > 0 else self.capacity
        if items and more > 0 and not stop.is_set():
            self.collect(window_s, more)
            try:
                items += self.get_many(0.0)
            except SubscriptionClosed:
                pass  # closed with nothing more: what was taken is still delivered
        return items

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def depth(self) -> int:
        return len(self._items)

    def stats(self) -> SubscriberStats:
        with self._lock:
            return SubscriberStats(self.name, self.lossless, self.capacity, len(self._items),
                                   self.delivered, self.dropped, self.blocked_s, self.alarms,
                                   self.alarm_active)


class Broadcast(Generic[T]):
    """Publishes every item to every subscription.

    ``DataDistributor`` (V2 measurements) and the unified stream are both this class;
    the name says who produces.
    """

    def __init__(self, name: str, *, stop: threading.Event | None = None,
                 on_alarm: Callable[[str, str], None] | None = None) -> None:
        self.name = name
        self._subs: list[Subscription[T]] = []
        self._lock = threading.Lock()
        self._stop = stop or threading.Event()
        self._on_alarm = on_alarm
        self.published = 0
        #: subscriptions given items by apublish whose consumers the loop wakes soon
        #: (apublish runs on one event loop; see there)
        self._to_wake: list[Subscription[T]] = []
        self._woke_at = 0.0  # loop time of the last wake-up

    def subscribe(self, name: str, *, lossless: bool, capacity: int = 1000) -> Subscription[T]:
        sub: Subscription[T] = Subscription(name, lossless=lossless, capacity=capacity,
                                            on_alarm=self._on_alarm)
        self.attach(sub)
        return sub

    def attach(self, sub: Subscription[T]) -> None:
        """Add an existing subscription (one consumer may listen to several broadcasts)."""
        with self._lock:
            self._subs = [*self._subs, sub]

    def detach(self, sub: Subscription[T]) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def publish(self, item: T, slice_s: float = 0.25) -> None:
        """Deliver to every open subscriber; wait (in slices) while a lossless one is full.

        The wait ends when the broadcast is stopped: at shutdown an item that
        cannot be delivered raises instead of blocking the shutdown forever.
        """
        for sub in self._subs:
            while True:
                try:
                    if sub.offer(item, slice_s):
                        break
                except SubscriptionClosed:
                    break
                if self._stop.is_set():
                    raise SubscriptionClosed(
                        f"{self.name}: shutting down while subscriber {sub.name!r} was full; "
                        "item not delivered")
        self.published += 1

    async def apublish(self, item: T) -> None:
        """``publish`` from a coroutine: fast when there is room, off-loop when there is not.

        Consumers are woken once per turn of the loop, and at most once per ``WAKE_EVERY_S``,
        not once per item: every actor that polls meanwhile publishes first, then one wake-up
        per consumer hands over the lot (one thread wake-up and GIL hand-over instead of one
        per batch). A stream that was quiet for longer wakes its consumers on the next turn.
        """
        for sub in self._subs:
            try:
                if sub.offer(item, 0.0, wake=False):
                    if sub not in self._to_wake:
                        self._to_wake.append(sub)
                        if len(self._to_wake) == 1:
                            self._schedule_wake(asyncio.get_running_loop())
                    continue
            except SubscriptionClosed:
                continue
            while True:
                try:
                    if await asyncio.to_thread(sub.offer, item, 0.25):
                        break
                except SubscriptionClosed:
                    break
                if self._stop.is_set():
                    raise SubscriptionClosed(
                        f"{self.name}: shutting down while subscriber {sub.name!r} was full")
        self.published += 1

    def _schedule_wake(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._woke_at + WAKE_EVERY_S
        if loop.time() >= due:
            loop.call_soon(self._wake_consumers, loop)
        else:
            loop.call_at(due, self._wake_consumers, loop)

    def _wake_consumers(self, loop: asyncio.AbstractEventLoop) -> None:
        self._woke_at = loop.time()
        subs, self._to_wake = self._to_wake, []
        for sub in subs:
            sub.wake()

    def subscriptions(self) -> list[Subscription[T]]:
        return list(self._subs)


def stats_dict(sub: Subscription[Any]) -> dict[str, Any]:
    return vars(sub.stats())
