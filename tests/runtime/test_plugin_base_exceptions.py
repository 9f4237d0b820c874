"""Plugin code that raises what is not an ``Exception`` (``sys.exit()``, a
``KeyboardInterrupt``, a ``GeneratorExit``), returns the wrong type, or waits on a stuck flush,
and a shutdown whose budget one hung driver spends: each costs its own instrument or sink only,
is named with its cause, and every other instrument goes on and has its files closed.

Only the main thread ever gets a real Ctrl-C, so on daqhub's threads (the v4 loop, a v2
instrument's, a sink's) a KeyboardInterrupt is the plugin's own doing, like SystemExit.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, RELEASE, CounterV2, CounterV4, make_lab

import daqhub.runtime.dual as dual
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import CommandRejected
from daqhub.measurement import ChannelSpec, Measurement
from daqhub.runtime.broadcast import Broadcast, Subscription
from daqhub.runtime.dual import DualRuntimeManager, PhaseTimeouts
from daqhub.runtime.restarts import RestartPolicy
from daqhub.runtime.v2 import V2Worker
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext, InstrumentType

FAST = RestartPolicy(max_restarts=3, window_s=30, backoff_first_s=0.01, backoff_max_s=0.05)
THIS_FILE = "test_plugin_base_exceptions.py:"
#: what each kind of misbehaving driver raises, and how its health line names it
RAISES: dict[str, tuple[Callable[[], BaseException], str]] = {
    "sysexit": (lambda: SystemExit(0), "SystemExit: 0"),
    "kbint": (lambda: KeyboardInterrupt("pressed in a driver"),
              "KeyboardInterrupt: pressed in a driver"),
    "genexit": (lambda: GeneratorExit("thrown by a driver"), "GeneratorExit: thrown by a driver"),
}


def raise_kind(kind: str) -> None:
    raise RAISES[kind][0]()


class ExitingV2(CounterV2):
    """Raises its kind from its 4th read on; ``bail`` raises it as a command."""

    kind = ""

    def read(self) -> list[Measurement]:
        if self.n >= 3:
            raise_kind(self.kind)
        return super().read()

    def bail(self) -> None:
        raise_kind(self.kind)


class ExitingV4(CounterV4):
    kind = ""

    async def read(self):
        if self.n >= 3:
            raise_kind(self.kind)
        return await super().read()

    async def bail(self) -> None:
        raise_kind(self.kind)


class BailingV2(ExitingV2):
    """Reads fine; only its command raises."""

    def read(self) -> list[Measurement]:
        return CounterV2.read(self)


class BailingV4(ExitingV4):
    async def read(self):
        return await CounterV4.read(self)


class WrongReadV4(CounterV4):
    """Returns what a test sets instead of a list of batches."""

    returns: Any = None

    async def read(self):
        await super().read()
        batch = build_batch(self.id, ChannelSpec("x", "scalar", "V"), [time.time_ns()],
                            np.array([1.0]))
        return {"batch": batch, "list_none": [None], "int": 5}[self.returns]


class LoopBlockingV4(CounterV4):
    """Blocks the event loop in its 3rd read until the test ends (a blocking call)."""

    async def read(self):
        if self.n == 2:
            RELEASE.wait(60)
        return await super().read()


def _types() -> list[InstrumentType]:
    channels = [ChannelSpec("count", "scalar", "", "int64"), ChannelSpec("x", "scalar", "V")]
    out = []
    for kind in RAISES:
        for flavor, base, bailing in (("v2", ExitingV2, BailingV2), ("v4", ExitingV4, BailingV4)):
            for name, cls in ((f"exit.{kind}", base), (f"bail.{kind}", bailing)):
                typed = type(f"{cls.__name__}_{kind}", (cls,), {"kind": kind})
                out.append(InstrumentType(name, flavor, "none", typed, channels, name))
    for returns in ("batch", "list_none", "int"):
        typed = type(f"WrongReadV4_{returns}", (WrongReadV4,), {"returns": returns})
        out.append(InstrumentType(f"wrong.{returns}", "v4", "none", typed, channels, returns))
    out.append(InstrumentType("loop.blocker", "v4", "none", LoopBlockingV4, channels, "blocks"))
    return out


@pytest.fixture
def misbehaving(host: PluginHost) -> PluginHost:
    host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(_types)),
                  "misbehaving", "misbehaving-drivers", "0")
    return host


def grows(iid: str, by: int = 5) -> None:
    """Wait until ``iid`` has made ``by`` more polls than now."""
    seen = PRODUCED.get(iid, 0)
    wait_until(lambda: PRODUCED.get(iid, 0) >= seen + by, what=f"{by} more polls of {iid}")


# --- drivers: a crash of their own, the others poll on -------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize("kind", list(RAISES))
def test_a_read_raising_sysexit_or_the_like_is_its_drivers_crash(misbehaving, tmp_path,
                                                                 flavor, kind) -> None:
    """v4: the whole event loop ended (GeneratorExit: the actor's task), every v4 instrument
    stopped, no alarm; v2: the instrument's thread ended, ``running`` with 0 errors."""
    bad = [("bad", f"exit.{kind}")]
    lab = make_lab(misbehaving, tmp_path, v2=[("g2", "test.counter")] + bad * (flavor == "v2"),
                   v4=[("g4", "test.counter")] + bad * (flavor == "v4"))
    rt = DualRuntimeManager(lab, misbehaving, restart_policy=FAST)
    rt.start()
    try:
        wait_until(lambda: rt.health_of("bad").state == "failed", what="bad failing")
        grows("g4")
        grows("g2")
    finally:
        report = rt.shutdown()
    outcome = {o["id"]: o for o in report.instruments}
    assert outcome["g2"]["ok"] and outcome["g4"]["ok"], report.failed
    bad_one = outcome["bad"]
    assert bad_one["problem"] == "failed" and bad_one["restarts"] == 3
    assert RAISES[kind][1] in bad_one["last_error"] and THIS_FILE in bad_one["last_error"]
    assert not report.leaked


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize("kind", ["sysexit", "kbint"])
def test_a_command_raising_sysexit_fails_that_command_at_once(misbehaving, tmp_path, flavor,
                                                               kind) -> None:
    """The caller waited its whole limit ("no result within 60 s"), and the instrument's
    thread (v2) or every v4 instrument's loop (v4) had ended."""
    lab = make_lab(misbehaving, tmp_path, v2=[("b", f"bail.{kind}")] if flavor == "v2" else [],
                   v4=[("b", f"bail.{kind}")] if flavor == "v4" else [])
    rt = DualRuntimeManager(lab, misbehaving)
    rt.start()
    try:
        grows("b")
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=f"^{RAISES[kind][1]} \\(at {THIS_FILE}"):
            rt.call("b", "bail", timeout=20)  # an error a script handles, not its own exit
        assert time.monotonic() - t0 < 5
        assert rt.call("b", "add", 2, 3) == 5  # the instrument serves commands still
        grows("b")
        health = rt.health_of("b")
        assert health.state == "running"
        assert health.last_error.startswith(f"bail failed: {RAISES[kind][1]} (at {THIS_FILE}")
    finally:
        report = rt.shutdown()
    assert not report.leaked and not report.forced


@pytest.mark.timeout(60)
def test_the_loop_thread_ending_is_an_alarm_and_its_actors_fail(misbehaving, tmp_path) -> None:
    """A SystemExit from a callback of no actor's (asyncio lets it out of the loop): every v4
    instrument stopped, ``running`` in the live view, no alarm; a command waited its whole
    limit and the report said "did not stop (left running)"."""
    lab = make_lab(misbehaving, tmp_path, v2=[("g2", "test.counter")],
                   v4=[("g4", "test.counter")])
    rt = DualRuntimeManager(lab, misbehaving)
    rt.start()

    def exits() -> None:
        raise SystemExit(7)

    try:
        grows("g4")
        rt.v4.loop.call_soon_threadsafe(exits)
        wait_until(lambda: any("v4 event loop thread ended" in a["message"]
                               for a in rt.alarms), what="the alarm")
        health = rt.health_of("g4")
        assert health.state == "failed"
        assert health.last_error.startswith("the v4 event loop thread ended: SystemExit: 7")
        t0 = time.monotonic()
        with pytest.raises(CommandRejected, match="g4 is failed"):
            rt.call("g4", "add", 1, 2, timeout=20)
        assert time.monotonic() - t0 < 1
        grows("g2")
    finally:
        report = rt.shutdown()
    outcome = {o["id"]: o for o in report.instruments}
    assert outcome["g2"]["ok"] and outcome["g4"]["problem"] == "failed"
    assert report.duration_s < 5


@pytest.mark.timeout(30)
def test_a_v2_thread_ended_by_an_exception_fails_its_instrument() -> None:
    """What daqhub's own code on the thread raises (here the event sink) ended it in
    silence: state ``running``, 0 errors, its commands waiting their whole limit."""
    spec = ChannelSpec("x", "scalar", "V")

    class Crashing(CounterV2):
        def read(self) -> list[Measurement]:
            raise RuntimeError("sensor on fire")

    def events(iid: str, event: str, detail: str) -> None:
        if event == "restarted":
            raise KeyboardInterrupt("raised in the event sink")

    itype = InstrumentType("crash", "v2", "none", Crashing, [spec], "crashes")
    worker = V2Worker(itype, InstrumentContext("c", "crash", {"id": "c"}, [spec]), 50,
                      Broadcast("v2"), events)
    worker.start()
    try:
        worker.thread.join(10)
        assert not worker.thread.is_alive()
        assert worker.health.state == "failed"
        assert worker.health.last_error.startswith(
            "its thread ended: KeyboardInterrupt: raised in the event sink (at ")
        with pytest.raises(CommandRejected, match="c failed"):
            worker.submit("add", 1, 2)
    finally:
        worker.stop_event.set()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("returns, says", [
    ("batch", "returned RecordBatch pyarrow.RecordBatch"),
    ("list_none", "returned NoneType None as item 0 of 1"),
    ("int", "returned int 5")])
def test_a_v4_read_of_the_wrong_type_names_the_drivers_read(misbehaving, tmp_path, returns,
                                                             says) -> None:
    """It was "AttributeError: 'pyarrow.lib.Int64Array' object has no attribute 'num_rows'",
    blamed on the runner's own line."""
    lab = make_lab(misbehaving, tmp_path, v2=[], v4=[("g4", "test.counter"),
                                                      ("w", f"wrong.{returns}")])
    rt = DualRuntimeManager(lab, misbehaving, restart_policy=FAST)
    rt.start()
    try:
        wait_until(lambda: rt.health_of("w").state == "failed", what="w failing")
        grows("g4")
    finally:
        report = rt.shutdown()
    error = {o["id"]: o for o in report.instruments}["w"]["last_error"]
    assert f"TypeError: WrongReadV4_{returns}.read() {says}" in error, error
    assert "a v4 read() returns a list of pyarrow.RecordBatch" in error
    assert "AttributeError" not in error


# --- sinks --------------------------------------------------------------------------------


class ExitingSink:
    """A sink whose 4th and 5th writes call ``sys.exit()``; its ``close()`` too on demand."""

    def __init__(self, close_exits: bool = False) -> None:
        self.writes = self.rows = 0
        self.close_exits = close_exits
        self.failed = threading.Event()

    def write(self, batch: pa.RecordBatch) -> None:
        self.writes += 1
        if self.writes in (4, 5):
            self.failed.set()
            raise SystemExit(0)
        self.rows += batch.num_rows

    def flush(self) -> None:
        pass

    def close(self) -> list[str]:
        if self.close_exits:
            raise KeyboardInterrupt("the share went away")
        return ["share.bin"]


@pytest.mark.timeout(60)
def test_a_sink_write_raising_sysexit_is_a_failed_write_and_the_sink_goes_on(host,
                                                                             tmp_path) -> None:
    """The storage thread ended: the sink got 5 batches, the run exited 0 "stopped cleanly"."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    sink = ExitingSink()
    rt = DualRuntimeManager(lab, host, sinks={"share": sink})
    rt.start()
    try:
        assert sink.failed.wait(10)
        rows = sink.rows
        wait_until(lambda: sink.rows > rows + 10, what="the sink's later writes")
    finally:
        report = rt.shutdown()
    assert not report.ok
    [error] = [e for e in report.errors if e.startswith("share:")]
    assert "(2 failed write(s)); last: write failed: SystemExit: 0 (at " in error, error
    [outcome] = report.instruments
    assert "not stored by share" in outcome["problem"]
    assert sink.rows + outcome["not_stored"] == sum(report.counts["a"].values())
    assert report.sink_results == {"share": ["share.bin"]}


@pytest.mark.timeout(60)
def test_a_sink_close_raising_keyboardinterrupt_is_an_error_not_a_hang(host, tmp_path) -> None:
    """The shutdown waited its whole budget, and named the sink as "still in close()"."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host, sinks={"share": ExitingSink(close_exits=True)},
                            phases=PhaseTimeouts(total_s=10))
    rt.start()
    try:
        grows("a")
    finally:
        report = rt.shutdown()
    assert report.duration_s < 5 and not report.leaked
    assert ("closing share failed: KeyboardInterrupt: the share went away (at "
            f"{THIS_FILE}") in report.errors[0], report.errors


@pytest.mark.timeout(60)
def test_a_sink_thread_that_ended_during_the_run_is_an_error(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    sink = ExitingSink()
    rt = DualRuntimeManager(lab, host, sinks={"disk": sink})
    rt.start()
    try:
        wait_until(lambda: sink.rows > 4, what="the first rows written")
        [st] = rt.sink_threads
        st.sub.close()  # its queue went away under it
        st.thread.join(5)
        assert any("disk: its storage thread ended during the run" in a["message"]
                   for a in rt.alarms), list(rt.alarms)
    finally:
        report = rt.shutdown()
    assert not report.ok
    assert any(e.startswith("disk: its storage thread ended during the run (its subscription "
                            "was closed during the run)") for e in report.errors), report.errors


@pytest.mark.timeout(30)
@pytest.mark.parametrize("holder, says", [
    ("the background flush", "a write has waited {} s for its writer, held by the background "
                             "flush (which has not returned)"),
    ("a write", "write() has not returned for {} s")])
def test_a_write_waiting_for_a_stuck_flush_names_the_flush(monkeypatch, holder, says) -> None:
    """A storage backend's flush() that hung was blamed on its write(), which only waited
    for the flusher's lock."""
    monkeypatch.setattr(dual, "SINK_STUCK_S", 0.05)
    release = threading.Event()

    class Waiting:
        def write(self, batch: pa.RecordBatch) -> None:
            release.wait(10)  # for the writer's lock, held by ``holder``

        def flush(self) -> None:
            pass

        def close(self) -> list[str]:
            return []

        def holder(self) -> str:
            return holder

    alarms: list[str] = []
    sub = Subscription[pa.RecordBatch]("storage:v2", lossless=True, capacity=10)
    st = dual.SinkThread("storage:v2", Waiting(), sub, lambda n, m: alarms.append(m),
                         label="v2 storage backend slow (slow 1.0)")
    sub.offer(build_batch("a", ChannelSpec("x", "scalar", "V"), [1], [1.0]), 1.0)
    st.start()
    try:
        wait_until(lambda: st.check() or alarms, what="the alarm")
    finally:
        release.set()
        assert st.stop(5)
    message = alarms[0]
    assert message.startswith("v2 storage backend slow (slow 1.0): ")
    start, end = says.split("{}")  # the seconds waited vary
    assert start in message and end in message and "; its batches wait" in message, message


# --- a shutdown whose budget one hung driver spent -----------------------------------------


@pytest.mark.timeout(60)
def test_a_hung_driver_that_spends_the_budget_costs_only_itself(host, tmp_path) -> None:
    """With ``shutdown_timeout`` spent waiting for one hung v2 read, every healthy
    instrument's file was left unclosed and the idle bridge, loop and storage threads were
    named as leaked."""
    lab = make_lab(host, tmp_path, v2=[("g2", "test.counter"), ("h", "test.hang")],
                   v4=[("g4", "test.counter")])
    total = 1.5
    rt = DualRuntimeManager(lab, host, storage=True, phases=PhaseTimeouts(total_s=total))
    rt.start()
    try:
        grows("g2")
        grows("g4")
    finally:
        report = rt.shutdown()
    assert report.leaked == ["v2 thread h (in read)"], report.leaked
    assert not [e for e in report.errors if "not closed" in e or "not written" in e], \
        report.errors
    files = report.sink_results["storage"]
    assert files["v2"] and files["v4"], files
    assert report.duration_s < total + dual.SINK_CLOSE_MIN_S, report.duration_s
    outcome = {o["id"]: o for o in report.instruments}
    assert outcome["g2"]["ok"] and outcome["g4"]["ok"], report.failed


@pytest.mark.timeout(60)
def test_a_blocked_loop_costs_no_time_past_the_budget(misbehaving, tmp_path) -> None:
    """Waiting for the actors of a blocked loop took a second past the budget, forcing them
    another."""
    lab = make_lab(misbehaving, tmp_path, v2=[("g2", "test.counter")],
                   v4=[("blocker", "loop.blocker")])
    total = 1.5
    rt = DualRuntimeManager(lab, misbehaving, phases=PhaseTimeouts(total_s=total))
    rt.start()
    try:
        wait_until(lambda: any("event loop blocked" in a["message"] for a in rt.alarms),
                   what="the loop blocked")
    finally:
        report = rt.shutdown()
    assert "blocker" in report.forced_instruments
    assert report.duration_s < total + 0.5, report.duration_s
    assert {o["id"]: o for o in report.instruments}["g2"]["ok"]
