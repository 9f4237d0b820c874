"""Handing finished async transactions and granted leases back to their event loops.

Waking a loop per job made the worker and the loop trade the GIL at every
``call_soon_threadsafe`` (its pipe write releases the GIL): 1.2 jobs per wake-up and a quarter
of raw throughput. So results are handed back in batches, one ``call_soon_threadsafe`` per loop
per batch: a batch is sent when its holder runs out of queued work, reaches ``POST_BATCH_MAX``
jobs or ``POST_BATCH_AGE_S`` seconds, or at once after a slow job (a 9600-baud exchange takes
milliseconds; a loop wake-up is cheap next to it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable

from .entries import Entry, Job

POST_BATCH_MAX = 64
POST_BATCH_AGE_S = 0.002
SLOW_JOB_S = 0.0005

_now = time.monotonic


class HandBack:
    """The loop side of a gate: finished async jobs collected, then posted to their loops."""

    def __init__(self) -> None:
        self._post_lock = threading.Lock()
        # per loop, what its next flush delivers (a loop is in here iff a flush is scheduled)
        self._posts: dict[asyncio.AbstractEventLoop, list[Entry]] = {}
        self._finished: list[Job] = []  # finished async jobs not yet posted, oldest first
        self._finished_since = 0.0

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
                else:
                    batch.append(entry)
        delivered = True
        for loop in schedule:
            try:
                loop.call_soon_threadsafe(self._flush, loop)
            except RuntimeError:  # loop closed
                with self._post_lock:
                    self._posts.pop(loop, None)
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
