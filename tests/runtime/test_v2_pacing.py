"""The v2 poll loop's pacing: never faster than asked (a poll may start at most
``POLL_GRAIN_S`` early), and commands run between polls even when every poll runs late."""

from __future__ import annotations

import time
from collections.abc import Iterator

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
    early = [i for i, t in enumerate(STARTS) if t - first < i * period - POLL_GRAIN_S - 1e-4]
    assert early == [], f"polls ran ahead of {hz} Hz: {early[:5]}"
