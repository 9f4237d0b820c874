"""Handing finished async transactions and granted leases back to their event loops.

Waking a loop per job made the worker and the loop trade the GIL at every
``call_soon_threadsafe`` (its pipe write releases the GIL): 1.2 jobs per wake-up and a quarter
of raw throughput. So results are handed back in batches, one ``call_soon_threadsafe`` per loop
per batch: a batch is sent when its holder runs out of queued work, reaches ``POST_BATCH_MAX``
jobs or ``POST_BATCH_AGE_S`` seconds, or at once after a slow job (a 9600-baud exchange takes
milliseconds; a loop wake-up is cheap next to it).

A posted batch is the loop's turn, and the GIL does not give turns: a V2 thread that ran the
batch (combining) and goes straight on with its own queries keeps the GIL, and the loop thread,
woken by the post, waits a whole switch interval (5 ms) for it, twice per V4 poll (once more
for its timer). So the sync holder that posted waits for the loop to take the batch
until the coroutines it woke have taken their next step (:meth:`HandBack._yield_to_loops`,
bounded by the switch interval, so it never waits longer than the GIL would have made the loop
wait): blocking drops the GIL, the loop runs at once, and a coroutine's next request is queued
before the thread's, in the order they would have come with real I/O.

The other turn the GIL withholds is a loop's own wake-up (a poll timer due, a callback posted):
its thread waits for the GIL while a V2 thread runs inline transactions back to back, a switch
interval or more each time (measured on the loaded box: a 10 ms poll timer ran 5-20 ms late). So
an inline holder, at most once per ``LOOK_S`` of releases, looks at the loops that use the gate
(:meth:`HandBack._turn_for_loops`) and, when one has work due, blocks until that loop has run
(bounded by the switch interval): the loop's coroutine then queues its request, and the gate
serves it in arrival order. This reads two attributes of asyncio's own loop (``_ready``,
``_scheduled``); a loop without them (uvloop) is not looked at.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterable

from .entries import Entry, Job

POST_BATCH_MAX = 64
POST_BATCH_AGE_S = 0.002
SLOW_JOB_S = 0.0005
LOOK_S = 0.001  # how often an inline holder looks whether a loop using the gate is due
LOOK_BACKOFF_S = 0.05  # ... and after a loop did not take its turn (blocked, or it is starved)
NEVER = float("inf")

_now = time.monotonic


class LoopTurns:
    """What a gate knows of the loops that use it (see the module doc)."""

    __slots__ = ("served", "users", "look_at")

    def __init__(self) -> None:
        self.served = threading.Event()  # clear while a flush is scheduled
        self.served.set()
        # the loops whose coroutines use the gate (a tuple replaced whole, never changed in
        # place: read without a lock, see .gil; a loop lost to two threads replacing it at once
        # is added back by its next request), and when an inline holder next looks at them
        self.users: tuple[asyncio.AbstractEventLoop, ...] = ()
        self.look_at = NEVER


class HandBack:
    """The loop side of a gate: finished async jobs collected, then posted to their loops."""

    _closed: bool

    def __init__(self) -> None:
        self._post_lock = threading.Lock()
        # per loop, what its next flush delivers (a loop is in here iff a flush is scheduled)
        self._posts: dict[asyncio.AbstractEventLoop, list[Entry]] = {}
        self._finished: list[Job] = []  # finished async jobs not yet posted, oldest first
        self._finished_since = 0.0
        self._turns = LoopTurns()
        self._notice = False  # the gate is closed or loops use it: its releases look closer

    def _hold_back(self, job: Job) -> None:
        """Collect a finished async job; send the batch once it is due (see the module doc)."""
        with self._post_lock:
            finished = self._finished
            now = _now()
            if not finished:
                self._finished_since = now
            finished.append(job)
            if (len(finished) < POST_BATCH_MAX and now - self._finished_since < POST_BATCH_AGE_S
                    and now - job.since < SLOW_JOB_S):
                return
        self._send_finished()

    def _send_due(self) -> None:
        """Send what is held back once its oldest has waited ``POST_BATCH_AGE_S``."""
        if self._finished and _now() - self._finished_since >= POST_BATCH_AGE_S:
            self._send_finished()

    def _send_finished(self) -> None:
        if not self._finished:  # the common case, without the lock (see .gil)
            return
        with self._post_lock:
            finished = self._finished
            if not finished:
                return
            self._finished = []
        self._post_all(finished)

    def _post(self, entry: Entry) -> bool:
        """Hand one finished job or granted lease back to its loop; False if the loop is closed
        (nobody is waiting any more)."""
        return self._post_all((entry,))

    def _post_all(self, entries: Iterable[Entry]) -> bool:
        """Add entries to their loops' next flush, scheduling a flush where none is pending.

        Returns False when a loop was closed (its entries are dropped: nobody waits for them).
        """
        schedule: list[asyncio.AbstractEventLoop] = []
        with self._post_lock:
            for entry in entries:
                loop = entry.loop
                assert loop is not None
                batch = self._posts.get(loop)
                if batch is None:
                    self._posts[loop] = [entry]
                    schedule.append(loop)
                    self._turns.served.clear()
                else:
                    batch.append(entry)
        delivered = True
        for loop in schedule:
            try:
                loop.call_soon_threadsafe(self._flush, loop)
            except RuntimeError:  # loop closed
                with self._post_lock:
                    self._posts.pop(loop, None)
                    if not self._posts:
                        self._turns.served.set()
                delivered = False
        return delivered

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: resolve the futures of everything posted to it since the last flush."""
        with self._post_lock:
            batch = self._posts.pop(loop, ())
        for entry in batch:
            fut = entry.fut
            if fut is None or fut.done():
                continue
            if entry.exc is not None:
                fut.set_exception(entry.exc)
            else:
                fut.set_result(entry.result)
        # after the coroutines woken above have run their next step (queued their next request)
        loop.call_soon(self._loop_served)

    def _loop_served(self) -> None:
        with self._post_lock:
            if not self._posts:
                self._turns.served.set()

    def _yield_to_loops(self) -> None:
        """A sync holder that posted: let the loops take their turn before going on (bounded).

        Waiting drops the GIL, so the loop thread gets it now instead of after a switch interval.
        """
        if self._posts:  # without the lock: one load (see .gil)
            self._turns.served.wait(sys.getswitchinterval())

    def _uses(self, loop: asyncio.AbstractEventLoop) -> None:
        """An async caller's loop: from now on inline holders look at it (see the module doc)."""
        turns = self._turns
        if loop not in turns.users:
            turns.users = (*turns.users, loop)
            turns.look_at = 0.0
            self._notice = True

    def _turn_for_loops(self, now: float) -> None:
        """An inline holder, between transactions: hand the GIL to a loop that has work due."""
        turns = self._turns
        turns.look_at = NEVER  # not looked at again by others meanwhile
        wait = LOOK_S
        users = turns.users
        if any(loop.is_closed() for loop in users):
            turns.users = users = tuple(loop for loop in users if not loop.is_closed())
        for loop in users:
            # read from this thread while the loop's may change them: single loads (see .gil)
            ready = getattr(loop, "_ready", None)
            timers = getattr(loop, "_scheduled", None)
            try:
                due = bool(ready) or bool(timers) and timers[0].when() <= now  # type: ignore[index]
            except IndexError:  # the loop's thread emptied it between the two looks
                due = True
            if due:
                served = threading.Event()
                try:  # two hops: what is due, and the steps it wakes, run before served is set
                    loop.call_soon_threadsafe(loop.call_soon, served.set)
                except RuntimeError:  # closed meanwhile
                    continue
                if not served.wait(sys.getswitchinterval()):
                    wait = LOOK_BACKOFF_S  # do not throttle the thread on an unresponsive loop
        turns.look_at = _now() + wait
        if not turns.users:
            turns.look_at = NEVER
            self._notice = self._closed
