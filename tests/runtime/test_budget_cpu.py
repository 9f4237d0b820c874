"""The budget's CPU figures: each subsystem's threads counted under it, the rest as "other",
and a thread that ended leaves no spike behind."""

from __future__ import annotations

import threading
import time

import pytest

from daqhub.runtime.budget import BudgetMonitor


def burn(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


@pytest.mark.timeout(30)
def test_a_busy_v2_thread_is_counted_under_v2_and_its_end_leaves_no_spike() -> None:
    monitor = BudgetMonitor(lambda: {})
    stop = threading.Event()
    thread = threading.Thread(target=burn, args=(stop,), name="daqhub-v2:meter")
    monitor.sample()
    thread.start()
    try:
        time.sleep(0.5)  # the sampled interval: the thread burns meanwhile
        busy = monitor.sample()["cpu_percent"]
    finally:
        stop.set()
        thread.join(10)
    # GIL-bound, so it gets what the main thread (waiting here) leaves: most of a core
    assert busy.get("v2", 0.0) > 50, busy
    assert busy.get("other", 0.0) < 30, busy
    time.sleep(0.3)  # an interval after it ended: its lifetime's CPU is not "other" now
    after = monitor.sample()["cpu_percent"]
    assert after.get("v2", 0.0) == 0.0 and after.get("other", 0.0) < 30, after
