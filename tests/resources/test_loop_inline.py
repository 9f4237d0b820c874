"""An async transaction on an idle resource whose transactions are quick runs in the loop's
own thread (no worker hand-off); anything else still goes through the worker."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from polling import wait_until

from daqhub.instrument import V4Actor
from daqhub.measurement import ChannelSpec
from daqhub.resources import VisaSessionManager
from daqhub.resources.loopinline import FAST_STREAK, INLINE_BUDGET_S
from daqhub.runtime.v4 import RestartPolicy, V4Runtime
from daqhub.runtime.watchdog import LoopWatchdog
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext, InstrumentType


def open_sim(visa_mgr: VisaSessionManager, sim_backend: str) -> Any:
    return visa_mgr.resource("GPIB0::5::INSTR", backend=sim_backend, read_termination="\n",
                             write_termination="\n")


def asker(command: str, threads: list[int], delay: float = 0.0):
    def fn(session: Any) -> str:
        threads.append(threading.get_ident())
        if delay:
            time.sleep(delay)  # a device that became slow
        return str(session.query(command))
    return fn


@pytest.mark.timeout(30)
def test_a_kind_proven_quick_runs_in_the_loop_thread_and_a_slow_one_goes_back(
        visa_mgr: VisaSessionManager, sim_backend: str) -> None:
    res = open_sim(visa_mgr, sim_backend)
    threads: list[int] = []

    async def main() -> tuple[int, list[str]]:
        loop_thread = threading.get_ident()
        replies = [await res.atransaction(asker("Q1?", threads), what="Q1?")
                   for _ in range(FAST_STREAK + 3)]
        return loop_thread, replies

    loop_thread, replies = asyncio.run(main())
    assert replies == ["R1"] * (FAST_STREAK + 3)
    # a kind never seen runs on the worker until it was quick FAST_STREAK times in a row
    assert loop_thread not in threads[:FAST_STREAK]
    assert threads[FAST_STREAK:] == [loop_thread] * 3
    assert res.stats()["transactions"] == FAST_STREAK + 3

    threads.clear()

    async def slowed() -> int:
        # once slow: forgiven (the loop's thread may just have been switched out); slow twice
        # in a row: handed off until quick again
        for delay in (INLINE_BUDGET_S * 4, 0.0, INLINE_BUDGET_S * 4, INLINE_BUDGET_S * 4):
            await res.atransaction(asker("Q1?", threads, delay=delay), what="Q1?")
        for _ in range(FAST_STREAK + 1):
            await res.atransaction(asker("Q1?", threads), what="Q1?")
        # another kind is judged on its own: Q2? was never seen, so the worker runs it
        await res.atransaction(asker("Q2?", threads), what="Q2?")
        return threading.get_ident()

    loop_thread = asyncio.run(slowed())
    # the slow ones ran inline (judged by their quick past), the one after two slow in a row
    # went to the worker until the kind was quick again; Q2? went to the worker
    assert threads[:4] == [loop_thread] * 4
    assert loop_thread not in threads[4:4 + FAST_STREAK]
    assert threads[4 + FAST_STREAK] == loop_thread
    assert threads[-1] != loop_thread


@pytest.mark.timeout(30)
def test_a_transaction_that_fails_slowly_sends_its_kind_to_the_worker_at_once(
        visa_mgr: VisaSessionManager, sim_backend: str) -> None:
    res = open_sim(visa_mgr, sim_backend)
    threads: list[int] = []

    def times_out(session: Any) -> str:
        threads.append(threading.get_ident())
        time.sleep(INLINE_BUDGET_S * 4)
        raise TimeoutError("no reply to Q1? (a device that stopped answering)")

    async def main() -> int:
        for _ in range(FAST_STREAK + 1):  # a quick kind, trusted
            await res.atransaction(asker("Q1?", threads), what="Q1?")
        threads.clear()
        with pytest.raises(TimeoutError):
            await res.atransaction(times_out, what="Q1?")
        await res.atransaction(asker("Q1?", threads), what="Q1?")
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads[0] == loop_thread  # the failing run went inline: the kind was quick
    assert threads[1] != loop_thread, "a run that timed out was forgiven as a GIL switch"


@pytest.mark.timeout(30)
def test_a_held_resource_is_waited_for_off_the_loop_and_others_work_never_runs_on_it(
        visa_mgr: VisaSessionManager, sim_backend: str) -> None:
    res = open_sim(visa_mgr, sim_backend)
    order: list[str] = []
    threads: list[int] = []
    leased, release = threading.Event(), threading.Event()

    def holder() -> None:
        with res.lease(owner="thread", timeout=5):
            leased.set()
            release.wait(5)
            order.append("lease ends")

    async def main() -> tuple[int, float]:
        loop_thread = threading.get_ident()
        for _ in range(FAST_STREAK):  # make Q1? a quick kind
            await res.atransaction(asker("Q1?", threads), what="Q1?")
        t = threading.Thread(target=holder)
        t.start()
        assert await asyncio.to_thread(leased.wait, 5)
        ticks = 0

        async def ticker() -> None:  # the loop keeps running while the transaction waits
            nonlocal ticks
            while not release.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.ensure_future(ticker())
        asyncio.get_running_loop().call_later(0.2, release.set)
        threads.clear()
        reply = await res.atransaction(asker("Q1?", threads), what="Q1?")
        order.append(reply)
        await tick
        t.join(5)
        return loop_thread, ticks

    loop_thread, ticks = asyncio.run(main())
    assert order == ["lease ends", "R1"]  # never interleaved with the lease
    assert threads != [loop_thread] and ticks >= 5  # waited on the worker, loop free

    # a thread that queues while an inline transaction holds the gate is served by the worker
    started, queued = threading.Event(), threading.Event()
    ran_on: list[int] = []

    def inline_fn(session: Any) -> str:
        started.set()
        assert queued.wait(5)
        wait_until(lambda: res.gate.queue_depth, "the thread's transaction in the gate's queue",
                   timeout=5, every=0.001)
        return str(session.query("Q1?"))

    def thread_fn(session: Any) -> str:
        ran_on.append(threading.get_ident())
        return str(session.query("Q2?"))

    def queuer() -> None:
        assert started.wait(5)
        queued.set()
        assert res.transaction(thread_fn, owner="thread", what="Q2?") == "R2"

    async def inline_with_queuer() -> int:
        for _ in range(FAST_STREAK):
            await res.atransaction(inline_fn if started.is_set() else asker("Q3?", []),
                                   what="Q3?")
        q = threading.Thread(target=queuer)
        q.start()
        assert await res.atransaction(inline_fn, what="Q3?") == "R1"
        await asyncio.to_thread(q.join, 5)
        return threading.get_ident()

    loop_thread = asyncio.run(inline_with_queuer())
    assert ran_on and ran_on[0] != loop_thread


SPEC = ChannelSpec("v", "scalar", "", "float64")


class QueryingActor(V4Actor):
    """Polls Q1? through the shared resource; its 6th transaction takes 0.6 s."""

    polls = 0

    async def read(self) -> list[pa.RecordBatch]:
        QueryingActor.polls += 1
        delay = 0.6 if QueryingActor.polls == 6 else 0.0
        res = self.ctx.visa
        reply = await res.atransaction(asker("Q1?", [], delay=delay), what="Q1?",
                                       owner=self.id)
        return [build_batch(self.id, SPEC, [time.time_ns()], np.array([float(reply[1:])]))]


@pytest.mark.timeout(30)
def test_the_watchdog_names_the_actor_whose_inline_transaction_blocks_the_loop(
        visa_mgr: VisaSessionManager, sim_backend: str) -> None:
    res = open_sim(visa_mgr, sim_backend)
    QueryingActor.polls = 0
    itype = InstrumentType("test.querying", "v4", "visa", QueryingActor, [SPEC], "test")
    ctx = InstrumentContext("dmm", "test.querying", {}, [SPEC], visa=res)
    published: list[pa.RecordBatch] = []

    class Sink:
        async def apublish(self, batch: pa.RecordBatch, channel: tuple[str, str]) -> None:
            published.append(batch)

    rt = V4Runtime(Sink(), lambda *a: None, RestartPolicy())
    runner = rt.add(itype, ctx, poll_hz=50)
    alarms: list[tuple[str, str, dict[str, Any]]] = []
    dog = LoopWatchdog(rt.loop, rt.thread, rt.runners, lambda *a: alarms.append(a),
                       bound_s=0.3)
    rt.start()
    dog.start()
    try:
        deadline = time.monotonic() + 15
        while not any("time.sleep(delay)" in a[2]["stack"] for a in alarms) \
                or QueryingActor.polls < 8:
            assert time.monotonic() < deadline, (alarms, QueryingActor.polls)
            time.sleep(0.02)
    finally:
        rt.signal_stop()
        assert rt.wait(5) == []
        dog.stop()
        assert rt.close()
    # the stack shows the transaction itself blocking the loop thread (not on the worker)
    what, message, _ = next(a for a in alarms if "time.sleep(delay)" in a[2]["stack"])
    assert what == "loop:dmm" and "v4 actor dmm (in read)" in message, message
    assert runner.health.errors >= 1
    assert "read blocked the event loop" in runner.health.last_error_seen
    assert len(published) >= 7
