"""An actor whose ``read()`` never suspends, polled flat out, cannot starve the event loop.

Issue 18 measured the opposite: 0 of 200 thread-safe callbacks ran within 2 s, cancelled
timer handles piled up by the ten thousand, and shutdown was forced with the loop thread
leaked. Here the same actor runs next to one that suspends in every read.
"""

from __future__ import annotations

import threading

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

from daqhub.runtime.dual import DualRuntimeManager, PhaseTimeouts
from daqhub.runtime.v4 import RestartPolicy


@pytest.mark.timeout(60)
def test_a_flat_out_actor_that_never_suspends_leaves_the_loop_to_the_others(host,
                                                                           tmp_path) -> None:
    # test.spin's read() computes for longer than a poll period without awaiting anything;
    # test.counter's returns at once; test.slowread sleeps in every read
    lab = make_lab(host, tmp_path, v2=[], v4=[("busy", "test.spin"), ("counter", "test.counter"),
                                              ("sleeper", "test.slowread")], poll_hz=10_000)
    rt = DualRuntimeManager(lab, host, phases=PhaseTimeouts(v4_s=3, v2_s=2, total_s=8))
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("busy", 0) > 1000, what="the busy actor to poll")
        ran = [0]
        all_ran = threading.Event()

        def callback() -> None:
            ran[0] += 1
            if ran[0] == 200:
                all_ran.set()

        for _ in range(200):
            rt.v4.loop.call_soon_threadsafe(callback)
        assert all_ran.wait(2.0), f"{ran[0]} of 200 thread-safe callbacks ran within 2 s"
        slept = PRODUCED.get("sleeper", 0)
        wait_until(lambda: PRODUCED.get("sleeper", 0) >= slept + 5, timeout=5,
                   what="the actor that suspends to keep polling")
        busy = PRODUCED["busy"]
        wait_until(lambda: PRODUCED["busy"] > busy + 1000, what="the busy actor to keep polling")
        # timers are scheduled per actor, not per poll: nothing piles up on the loop
        pending = len(rt.v4.loop._scheduled)  # the loop's timer heap (no public view of it)
        assert pending < 20, f"{pending} timer handles scheduled on the loop"
        assert not any(a["what"] == "loop:busy" for a in rt.alarms), rt.alarms
    finally:
        report = rt.shutdown()
    assert report.ok and not report.forced and not report.leaked, (report.failed, report.clean)
    assert not rt.v4.thread.is_alive()
    assert report.counts["busy"]["count"] == PRODUCED["busy"]


@pytest.mark.timeout(60)
def test_an_actor_whose_reads_suspend_takes_one_loop_pass_per_poll(host, tmp_path) -> None:
    """Its read lets the loop run already, so the runner adds no yield of its own: the loop
    made two passes per poll of such an actor (in bench/pipeline.py its CPU per poll fell
    from 47 to 40 us without the second)."""
    lab = make_lab(host, tmp_path, v2=[], v4=[("yielding", "test.yielding")], poll_hz=10_000)
    rt = DualRuntimeManager(lab, host, phases=PhaseTimeouts(v4_s=3, v2_s=2, total_s=8))
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("yielding", 0) > 200, what="the actor to poll")
        passes, polls = rt.v4.passes.passes, PRODUCED["yielding"]
        wait_until(lambda: PRODUCED["yielding"] > polls + 3000, what="3000 more polls")
        per_poll = (rt.v4.passes.passes - passes) / (PRODUCED["yielding"] - polls)
    finally:
        report = rt.shutdown()
    assert report.ok, report.failed
    assert 0.9 < per_poll < 1.5, f"{per_poll:.2f} loop passes per poll"


@pytest.mark.timeout(60)
def test_a_read_past_its_deadline_is_cancelled_and_counted_as_an_error(host, tmp_path) -> None:
    # test.slowread sleeps 50 ms in every read; its deadline is 20 ms
    lab = make_lab(host, tmp_path, v2=[], v4=[("late", "test.slowread"),
                                              ("ok", "test.counter")], poll_hz=20)
    policy = RestartPolicy(read_timeout_s=0.02, backoff_first_s=0.01)
    rt = DualRuntimeManager(lab, host, restart_policy=policy)
    rt.start()
    try:
        wait_until(lambda: rt.health_of("late").errors >= 2, what="two overrun reads")
        h = rt.health_of("late")
        assert "read failed: late.read did not finish within 0.02 s and was cancelled" in \
            h.last_error_seen, h.last_error_seen
        assert h.restarts == 0 and "late" not in PRODUCED  # a device error, not a crash
        ok = PRODUCED.get("ok", 0)
        wait_until(lambda: PRODUCED.get("ok", 0) > ok + 3, what="the other actor to poll on")
    finally:
        report = rt.shutdown()
    assert not report.forced and not report.leaked, report.as_dict()
