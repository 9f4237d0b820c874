"""The v2 poll loop's pacing: never faster than asked (a poll may start at most the grain
early: ``POLL_GRAIN_S``, up to a switch interval while its sleeps end late), and commands
run between polls even when every poll runs late."""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polling import wait_until
from runtime_fakes import CHANNELS, PRODUCED, CounterV2

from daqhub.measurement import Measurement
from daqhub.runtime.broadcast import Broadcast
from daqhub.runtime.v2 import POLL_GRAIN_S, V2Worker
from daqhub.specs import InstrumentContext, InstrumentType

STARTS: list[float] = []


class LateV2(CounterV2):
    """Each read takes 3 ms, three periods at 1 kHz: every poll starts late."""

    def read(self) -> list[Measurement]:
        time.sleep(0.003)
        return super().read()


class StampedV2(CounterV2):
    def read(self) -> list[Measurement]:
        STARTS.append(time.monotonic())
        return super().read()


@pytest.fixture
def start_worker() -> Iterator:
    workers: list[V2Worker] = []

    def start(cls: type, poll_hz: float) -> V2Worker:
        itype = InstrumentType("test.paced", "v2", "none", cls, CHANNELS, "pacing test")
        ctx = InstrumentContext("w", "test.paced", {"id": "w"}, CHANNELS)
        distributor: Broadcast[list[Measurement]] = Broadcast("v2")
        distributor.subscribe("test", lossless=False, capacity=10)
        w = V2Worker(itype, ctx, poll_hz, distributor, lambda *event: None)
        workers.append(w)
        w.start()
        return w

    STARTS.clear()
    yield start
    for w in workers:
        w.stop_event.set()
        w.wake_event.set()
    for w in workers:
        w.thread.join(5)
        assert not w.thread.is_alive()


@pytest.mark.timeout(30)
def test_a_command_runs_between_polls_that_all_run_late(start_worker) -> None:
    w = start_worker(LateV2, 1000)
    wait_until(lambda: PRODUCED.get("w", 0) >= 5, what="5 late polls")
    assert w.submit("add", 2, 3).result(timeout=10) == 5  # not starved by the late polls
    polled = PRODUCED["w"]
    wait_until(lambda: PRODUCED["w"] >= polled + 5, what="polling to go on after the command")


@pytest.mark.timeout(30)
def test_polls_never_run_ahead_of_the_rate_asked(start_worker) -> None:
    hz = 500  # a period shorter than the grain: polls may run early, never too many
    w = start_worker(StampedV2, hz)
    wait_until(lambda: len(STARTS) >= 200, what="200 polls")
    w.stop_event.set()
    w.thread.join(5)
    period, first = 1 / hz, STARTS[0]
    # poll i is due at the earliest i periods after the first, and starts at most the
    # grain before it is due; starting late (a loaded machine) is always allowed
    grain = max(POLL_GRAIN_S, sys.getswitchinterval())
    early = [i for i, t in enumerate(STARTS) if t - first < i * period - grain - 1e-4]
    assert early == [], f"polls ran ahead of {hz} Hz: {early[:5]}"


@pytest.mark.timeout(30)
def test_sleeps_that_end_late_make_the_thread_sleep_less_often(start_worker) -> None:
    """In a busy process a sleep ends late (the GIL comes back up to a switch interval
    later), and each sleep hands the GIL over: then the polls due within that lateness run
    at once, so the thread sleeps once per several polls, never faster than asked."""
    late_by = 0.004  # < the 5 ms switch interval
    w = start_worker(StampedV2, 2000)  # a 0.5 ms period: polls run ahead, then it sleeps
    sleeps: list[float] = []

    def late_get(block: bool = True, timeout: float | None = None) -> Any:
        sleeps.append(time.monotonic())
        time.sleep((timeout or 0) + late_by)  # as a sleep behind busy threads ends
        raise queue.Empty

    w.commands.get = late_get  # type: ignore[method-assign]
    wait_until(lambda: len(sleeps) >= 40, what="40 sleeps")
    w.stop_event.set()
    w.thread.join(5)
    polls = [t for t in STARTS if sleeps[10] <= t < sleeps[-1]]
    per_sleep = len(polls) / (len(sleeps) - 11)
    # sleeping whenever a poll is 1 ms ahead would make ~2 polls per sleep at 2 kHz
    assert per_sleep >= 5, f"{per_sleep:.1f} polls per sleep"
    span = STARTS[-1] - STARTS[0]
    assert len(STARTS) - 1 <= span * 2000 + 2000 * max(POLL_GRAIN_S, sys.getswitchinterval())
