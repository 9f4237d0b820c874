"""Bounded polling for test states that nothing signals.

Another thread's place in a gate's queue, a counter a worker process bumps, rows in a file
another process writes: no event or condition fires when these change, so a test can only look
again until the state holds or a deadline passes. Wait on an Event or Condition instead
wherever the code under test offers one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], what: str, timeout: float = 10.0,
               every: float = 0.01) -> None:
    """Poll ``cond`` every ``every`` s until it is true; for states nothing signals (another
    thread's queue depth, another process's file, row counts).

    Raises AssertionError naming ``what`` if ``cond`` is still false after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
