"""When an async transaction may run in the event loop's own thread, skipping the hand-off.

An async transaction normally runs on the gate's worker thread and its result is posted back
to the loop: loop -> worker -> loop costs about 200 us, several times a pyvisa-sim query or a
short pty exchange. Running such a transaction in the loop's thread instead blocks the loop
for as long as the I/O takes, so it is done only where that is known to be short:

* the gate is free and nobody is queued (a non-blocking take; else the hand-off as usual),
  and the task holds no lease (leased work keeps its own path);
* this kind of transaction (its ``what``, the command for driver transactions) completed within
  ``INLINE_BUDGET_S`` the last ``FAST_STREAK`` times it ran, inline or on the worker, measured
  here. A kind never seen, or one that just took longer (a slow command, a device that stopped
  answering), goes through the worker until it has been fast ``FAST_STREAK`` times again.

So a loop is blocked for more than the budget at most once per change of a device's speed,
by one transaction; then the watchdog names the actor it ran for (the task running on the loop).
Traffic never interleaves: the gate is held as for any transaction, and work queued by others
meanwhile is left to the worker thread, never run on the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

H = TypeVar("H")
T = TypeVar("T")

INLINE_BUDGET_S = 0.005   # the longest a recent transaction of a kind may have taken
FAST_STREAK = 2           # ... for so many runs in a row before it runs on the loop
MAX_KINDS = 512           # kinds remembered per resource (forgotten all at once beyond)

_now = time.monotonic


class QuickKinds:
    """Which kinds of transaction of one resource were recently fast (see the module doc).

    Updated from the loop thread and the worker without a lock: each update is one dict
    store, and a lost one only delays or advances one kind's switch by one transaction.
    """

    __slots__ = ("_streaks",)

    def __init__(self) -> None:
        self._streaks: dict[Hashable, int] = {}

    def allows(self, what: Any) -> bool:
        try:
            return self._streaks.get(what, 0) >= FAST_STREAK
        except TypeError:  # an unhashable description: never inline
            return False

    def record(self, what: Any, seconds: float) -> None:
        streaks = self._streaks
        try:
            if seconds > INLINE_BUDGET_S:
                streaks[what] = 0
                return
            n = streaks.get(what, 0)
            if n < FAST_STREAK:
                if len(streaks) >= MAX_KINDS:
                    streaks.clear()
                streaks[what] = n + 1
        except TypeError:
            pass

    def timed(self, fn: Callable[[H], T], what: Any) -> Callable[[H], T]:
        """``fn`` timed where it runs (the worker), so the next decision knows its speed."""
        def run(handle: H) -> T:
            start = _now()
            try:
                return fn(handle)
            finally:
                self.record(what, _now() - start)
        return run
