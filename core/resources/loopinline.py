"""When an async transaction may run in the event loop's own thread, skipping the hand-off.

An async transaction normally runs on the gate's worker thread and its result is posted back
to the loop: loop -> worker -> loop costs about 200 us, several times a pyvisa-sim query or a
short pty exchange. Running such a transaction in the loop's thread instead blocks the loop
for as long as the I/O takes, so it is done only where that is known to be short:

* the gate is free and nobody is queued (a non-blocking take; else the hand-off as usual),
  and the task holds no lease (leased work keeps its own path);
* this kind of transaction (its ``what``, the command for driver transactions) completed within
  ``INLINE_BUDGET_S`` the last ``FAST_STREAK`` times it ran, inline or on the worker, measured
  here. A kind never seen, or one that took longer (a slow command, a device that stopped
  answering), goes through the worker until it has been fast ``FAST_STREAK`` times again.

Once a kind has been fast one run more than that, a single slow run that completed is
forgiven; the next slow one in a row sends it to the worker. A run's time is wall time, and
in a process whose threads compute, the loop's thread is switched out for a whole GIL switch
interval (5 ms, the budget) now and then, in the middle of a transaction as anywhere: judged
on one run, a quick kind went to the worker after each such switch, and each hand-off cost the
loop a switch interval or two more. Measured with two v2 and two v4 1830-C meters polling flat
out in one process: 20 slow runs a second, 40 hand-offs, the v4 meters made 1,000 polls/s in
all; forgiving one, 1 hand-off a second and 1,900 polls/s. A run that failed slow (a device
that stopped answering runs into its timeout) is never forgiven.

So a loop is blocked for more than the budget by at most two transactions per change of a
device's speed (one if they time out); then the watchdog names the actor it ran for (the task
running on the loop).
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

    def record(self, what: Any, seconds: float, failed: bool = False) -> None:
        """One run of ``what`` took ``seconds``. The streak counts fast runs in a row up to
        one beyond ``FAST_STREAK``; a slow run forgiven (see the module doc) takes that one
        back, any other slow run the whole streak."""
        streaks = self._streaks
        try:
            n = streaks.get(what, 0)
            if seconds > INLINE_BUDGET_S:
                streaks[what] = FAST_STREAK if n > FAST_STREAK and not failed else 0
            elif n <= FAST_STREAK:
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
                result = fn(handle)
            except BaseException:
                self.record(what, _now() - start, failed=True)
                raise
            self.record(what, _now() - start)
            return result
        return run
