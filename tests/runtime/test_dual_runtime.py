"""Both runtimes at once: exactly-once delivery, supervision, forced shutdown, backpressure."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

from daqhub.plugins.converters import batch_to_rows
from daqhub.runtime.dual import DualRuntimeManager, PhaseTimeouts, ShutdownReport
from daqhub.runtime.report import print_report
from daqhub.runtime.v4 import RestartPolicy
from daqhub.storage import WriteFailed

FAST = RestartPolicy(max_restarts=3, window_s=30, backoff_first_s=0.01, backoff_max_s=0.05)


class Recorder:
    """A lossless sink that records every unified row."""

    def __init__(self, delay: float = 0.0) -> None:
        self.rows: list = []
        self.delay = delay
        self.closed = False

    def write(self, batch) -> None:
        if self.delay:
            time.sleep(self.delay)  # a slow disk
        self.rows.extend(batch_to_rows(batch))

    def flush(self) -> None:
        pass

    def close(self):
        self.closed = True
        return len(self.rows)


@pytest.mark.timeout(30)
def test_every_measurement_reaches_storage_exactly_once_in_order(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter"), ("b", "test.counter")],
                   v4=[("c", "test.counter"), ("d", "test.slow")], poll_hz=200)
    rec = Recorder()
    rt = DualRuntimeManager(lab, host, sinks={"storage": rec}, restart_policy=FAST)
    rt.start()
    wait_until(lambda: all(PRODUCED.get(i, 0) >= 100 for i in "abcd"), what="100 polls each")
    assert rt.call("a", "add", 2, 3) == 5       # a v2 command between polls
    assert rt.call("c", "add", 4, 5) == 9       # a v4 ask through the mailbox
    report = rt.shutdown()
    assert rec.closed and report.ok, report
    counts = Counter((r.instrument_id, r.channel) for r in rec.rows)
    for iid in "abcd":
        for ch in ("count", "x"):
            assert counts[(iid, ch)] == PRODUCED[iid], (iid, ch)   # none lost, none doubled
        seq = [int(r.data.value) for r in rec.rows if r.instrument_id == iid and
               r.channel == "count"]
        assert seq == list(range(1, PRODUCED[iid] + 1))             # in order
    assert {r.source for r in rec.rows if r.instrument_id in "ab"} == {"v2"}
    assert {r.source for r in rec.rows if r.instrument_id in "cd"} == {"v4"}
    for iid in "acd":  # counted per channel, v4 actors' two channels alternating included
        assert report.counts[iid] == {"count": PRODUCED[iid], "x": PRODUCED[iid]}, iid
    assert rt.shutdown() is report  # a second shutdown is harmless


@pytest.mark.timeout(30)
def test_crashing_actor_restarts_then_fails_while_others_produce(host, tmp_path) -> None:
    events = []
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")],
                   v4=[("boom", "test.crash"), ("flaky", "test.flaky"), ("ok", "test.counter")])
    rt = DualRuntimeManager(lab, host, restart_policy=FAST)
    rt._instrument_event = lambda iid, ev, detail: events.append((iid, ev))  # type: ignore
    rt.v4.events = rt._instrument_event
    rt.start()
    wait_until(lambda: rt.health_of("boom").state == "failed", what="boom marked failed")
    wait_until(lambda: PRODUCED.get("flaky", 0) > 5, what="flaky producing after its restart")
    before = PRODUCED.get("ok", 0)
    wait_until(lambda: PRODUCED.get("ok", 0) > before + 5, what="others still producing")
    boom = rt.health_of("boom")
    assert boom.restarts == FAST.max_restarts and "sensor on fire" in boom.last_error
    assert rt.health_of("flaky").restarts == 1
    assert ("boom", "failed") in events and events.count(("boom", "restarted")) == 3
    with pytest.raises(Exception, match="failed"):
        rt.call("boom", "add", 1, 1, timeout=2)
    report = rt.shutdown()
    assert not report.leaked


@pytest.mark.timeout(30)
def test_a_crashing_v2_driver_restarts_then_fails_as_an_actor_does(host, tmp_path) -> None:
    """A bug in a v2 read (not a device error) is a crash under the same restart policy as
    a v4 actor's: restarted with backoff, then failed, its commands refused at once; a v2
    instrument used to reopen such a driver for ever."""
    events = []
    lab = make_lab(host, tmp_path, v2=[("boom", "test.crash"), ("a", "test.counter")],
                   v4=[("ok", "test.counter")])
    rt = DualRuntimeManager(lab, host, restart_policy=FAST)
    rt._instrument_event = lambda iid, ev, detail: events.append((iid, ev))  # type: ignore
    rt.v2.events = rt._instrument_event
    rt.start()
    wait_until(lambda: rt.health_of("boom").state == "failed", what="boom marked failed")
    before = PRODUCED.get("a", 0)
    wait_until(lambda: PRODUCED.get("a", 0) > before + 5, what="others still producing")
    boom = rt.health_of("boom")
    assert boom.restarts == FAST.max_restarts
    assert "RuntimeError: sensor on fire (at runtime_fakes.py" in boom.last_error
    assert ("boom", "failed") in events and events.count(("boom", "restarted")) == 3
    with pytest.raises(Exception, match="boom failed"):
        rt.call("boom", "add", 1, 1, timeout=2)
    report = rt.shutdown()
    assert not report.leaked and any(f.startswith("boom:") for f in report.failed)


@pytest.mark.timeout(30)
def test_hung_v2_driver_is_forced_within_budget_and_reported(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("stuck", "test.hang"), ("a", "test.counter")],
                   v4=[("c", "test.counter")])
    rt = DualRuntimeManager(lab, host, phases=PhaseTimeouts(v4_s=1, v2_s=1, total_s=4))
    before = {t.name for t in threading.enumerate()}
    rt.start()
    wait_until(lambda: rt.v2.workers["stuck"].busy_in == "read", what="driver stuck in read")
    t0 = time.monotonic()
    report = rt.shutdown()
    assert time.monotonic() - t0 < 4.5
    assert any(f.startswith("stuck (v2 thread, busy in read)") for f in report.forced)
    assert any("stuck" in x for x in report.leaked)       # pure-Python hang: the thread lives on
    assert set(report.clean) == {"a", "c"}
    from runtime_fakes import RELEASE
    RELEASE.set()
    rt.v2.workers["stuck"].thread.join(5)
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leftover if n.startswith("daqhub")], leftover


@pytest.mark.timeout(30)
def test_a_forced_v4_actor_is_reported_with_what_it_was_busy_in(host, tmp_path) -> None:
    """Forcing cancels the actor and clears what it was doing; the report keeps it."""
    lab = make_lab(host, tmp_path, v2=[], v4=[("stuck4", "test.hang"), ("c", "test.counter")])
    rt = DualRuntimeManager(lab, host, phases=PhaseTimeouts(v4_s=1, v2_s=1, total_s=4))
    rt.start()
    wait_until(lambda: rt.v4.runners["stuck4"].busy_in == "read", what="actor stuck in read")
    report = rt.shutdown()
    assert "stuck4 (v4 actor, busy in read)" in report.forced, report.forced
    assert "c" in report.clean and not report.leaked


@pytest.mark.timeout(30)
def test_shutdown_under_load_is_bounded_every_time(host, tmp_path) -> None:
    for _ in range(5):
        lab = make_lab(host, tmp_path, v2=[("a", "test.counter"), ("b", "test.counter")],
                       v4=[("c", "test.counter"), ("d", "test.counter")], poll_hz=1000)
        rt = DualRuntimeManager(lab, host, sinks={"s": Recorder()},
                                phases=PhaseTimeouts(total_s=3))
        rt.start()
        wait_until(lambda: all(PRODUCED.get(i, 0) > 20 for i in "abcd"), what="load")
        t0 = time.monotonic()
        report = rt.shutdown()
        assert time.monotonic() - t0 < 3.5 and report.ok, report
        PRODUCED.clear()


@pytest.mark.timeout(30)
def test_slow_lossless_subscriber_slows_producers_and_alarms(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")],
                   poll_hz=500)
    slow = Recorder(delay=0.01)
    rt = DualRuntimeManager(lab, host, sinks={"slow": slow}, sink_capacity=20)
    rt.start()
    live = rt.subscribe("live", lossless=False, capacity=5)  # lossy, never read: loses its own
    wait_until(lambda: any("slow" in a["message"] for a in rt.alarms), what="backpressure alarm")
    # slowed as they are, the producers fill the lossy queue in time (on a loaded box only
    # 3 batches had reached it when the alarm came)
    wait_until(lambda: live.stats().dropped > 0, what="the lossy subscriber losing batches")
    report = rt.shutdown()
    counts = Counter((r.instrument_id, r.channel) for r in slow.rows)
    assert counts[("a", "count")] == PRODUCED["a"] and counts[("c", "count")] == PRODUCED["c"]
    st = live.stats()
    assert st.dropped > 0 and st.depth <= 5
    assert report.counts["a"]["count"] == PRODUCED["a"]


def five_polls_each(host, tmp_path, v2=(), v4=()) -> tuple[ShutdownReport, Recorder]:
    """A run of the given instruments until each polled five times, stored by a Recorder."""
    lab = make_lab(host, tmp_path, v2=list(v2), v4=list(v4))
    rec = Recorder()
    rt = DualRuntimeManager(lab, host, sinks={"storage": rec}, restart_policy=FAST)
    rt.start()
    ids = [i for i, _ in (*v2, *v4)]
    wait_until(lambda: all(PRODUCED.get(i, 0) >= 5 for i in ids), what="5 polls each")
    return rt.shutdown(), rec


@pytest.mark.timeout(30)
def test_v4_batches_of_channels_not_declared_so_are_refused_and_named(host, tmp_path) -> None:
    """As the bridge refuses a v2 driver's samples of an undeclared channel: storage could not
    write them, so they are counted as the instrument's errors, never as stored samples,
    and an instrument with samples refused is not ok (data it produced is in no file)."""
    report, rec = five_polls_each(host, tmp_path, v4=[("s", "test.stray"),
                                                      ("o", "test.onlystray")])
    outcome = {o["id"]: o for o in report.instruments}
    assert report.counts == {"s": {"count": PRODUCED["s"]}}
    assert {(r.instrument_id, r.channel) for r in rec.rows} == {("s", "count")}
    assert outcome["s"]["errors"] == 2 * PRODUCED["s"]
    assert "channel s.x was declared as" in outcome["s"]["last_error"]
    refused = outcome["s"]["refused_samples"]
    assert refused >= 2 * PRODUCED["s"] and not outcome["s"]["ok"]
    assert outcome["s"]["problem"] == (f"{refused} of its samples refused, not stored "
                                       "(its errors say why)")
    assert not outcome["o"]["ok"], outcome["o"]
    assert outcome["o"]["problem"] == f"none of its {2 * PRODUCED['o']} samples was accepted"
    assert outcome["o"]["errors"] == 2 * PRODUCED["o"]
    assert not report.ok


@pytest.mark.timeout(30)
def test_a_v2_driver_cannot_store_samples_as_another_instruments(host, tmp_path) -> None:
    report, rec = five_polls_each(host, tmp_path, v2=[("a", "test.counter"),
                                                      ("i", "test.impostor")])
    outcome = {o["id"]: o for o in report.instruments}
    assert report.counts["a"]["count"] == PRODUCED["a"]  # only a's own
    assert sorted(int(r.data.value) for r in rec.rows
                  if (r.instrument_id, r.channel) == ("a", "count")) == \
        list(range(1, PRODUCED["a"] + 1))  # no -1 among them
    assert outcome["a"]["errors"] == 0 and outcome["i"]["errors"] == PRODUCED["i"]
    assert "rejected 1 sample(s) named for instrument 'a'" in outcome["i"]["last_error"]
    assert outcome["a"]["ok"] and not outcome["i"]["ok"]
    assert outcome["i"]["refused_samples"] == PRODUCED["i"]
    assert report.counts["i"] == {"count": PRODUCED["i"], "x": PRODUCED["i"]}


@pytest.mark.timeout(30)
def test_samples_a_sink_failed_to_write_make_the_run_not_ok(host, tmp_path) -> None:
    class FullDisk(Recorder):
        def write(self, batch) -> None:
            if len(self.rows) >= 20:
                raise OSError(28, "No space left on device")
            super().write(batch)

    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")])
    disk = FullDisk()
    rt = DualRuntimeManager(lab, host, sinks={"disk": disk}, restart_policy=FAST)
    rt.start()
    wait_until(lambda: PRODUCED.get("a", 0) >= 20 and PRODUCED.get("c", 0) >= 20,
               what="20 polls each")
    report = rt.shutdown()
    lost = sum(n for chans in report.counts.values() for n in chans.values()) - len(disk.rows)
    assert lost > 0 and not report.ok
    assert len(report.errors) == 1 and re.fullmatch(
        rf"disk: {lost} sample\(s\) not written \(\d+ failed write\(s\)\); last: write "
        r"failed: \[Errno 28\] No space left on device", report.errors[0]), report.errors
    assert [a["message"] for a in rt.alarms if a["what"] == "sink:disk"] == \
        ["disk: write failed: [Errno 28] No space left on device"]  # one, not one per batch


@pytest.mark.timeout(30)
def test_samples_a_sink_held_when_it_failed_and_lost_at_close_are_all_counted(
        host, tmp_path) -> None:
    """A storage writer holds samples before they reach the disk: when it fails it loses
    those too, and says how many (WriteFailed.lost); a file removed while written loses its
    samples at close. The report counts them all, in one line, and lists the files left."""
    class Holding(Recorder):
        """Keeps every other batch in memory; loses what it holds at the 20th row; then
        refuses each batch; at close, its first 5 stored rows turn out lost."""

        def __init__(self) -> None:
            super().__init__()
            self.held: list = []
            self.failed = False

        def write(self, batch) -> None:
            rows = batch_to_rows(batch)
            if self.failed:
                raise WriteFailed("the file stopped at an earlier error", len(rows))
            if len(self.rows) + len(self.held) + len(rows) > 20:
                self.failed = True
                lost = len(self.held) + len(rows)
                self.held = []
                raise WriteFailed(f"disk full: {lost} held", lost)
            self.held.extend(rows)
            if len(self.held) >= 2:
                self.rows.extend(self.held)
                self.held = []

        def close(self):
            raise WriteFailed("one file was removed", 5, ["kept.h5"])

    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")])
    sink = Holding()
    rt = DualRuntimeManager(lab, host, sinks={"disk": sink}, restart_policy=FAST)
    rt.start()
    wait_until(lambda: PRODUCED.get("a", 0) >= 20 and PRODUCED.get("c", 0) >= 20,
               what="20 polls each")
    report = rt.shutdown()
    produced = sum(n for chans in report.counts.values() for n in chans.values())
    lost = produced - (len(sink.rows) - 5)
    assert sink.failed and not report.ok
    assert report.sink_results["disk"] == ["kept.h5"]
    assert len(report.errors) == 1 and re.fullmatch(
        rf"disk: {lost} sample\(s\) not written \(\d+ failed write\(s\)\); last: close "
        r"failed: one file was removed", report.errors[0]), report.errors


def test_unknown_command_and_health(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    try:
        with pytest.raises(Exception, match="has no command 'explode'"):
            rt.call("a", "explode")
        with pytest.raises(Exception, match="has no command 'explode'"):
            rt.call("c", "explode")
        wait_until(lambda: all(h["measurements"] > 0 for h in rt.health()["instruments"]),
                   what="a sample from each instrument")
        h = {x["id"]: x for x in rt.health()["instruments"]}
        assert h["a"]["flavor"] == "v2" and h["c"]["flavor"] == "v4"
        assert h["a"]["state"] == "running" and h["a"]["last_value"]
    finally:
        rt.shutdown()


def test_plugins_hear_lifecycle_events(host, tmp_path) -> None:
    import types as pytypes

    from daqhub.hookspecs import hookimpl

    heard: list[tuple] = []
    listener = pytypes.SimpleNamespace(
        daqhub_session_started=hookimpl(
            lambda session_id, output_dirs: heard.append(("started", session_id))),
        daqhub_session_stopped=hookimpl(
            lambda session_id, report: heard.append(("stopped", bool(report["clean"])))),
        daqhub_instrument_event=hookimpl(
            lambda instrument_id, event, detail: heard.append((instrument_id, event))))
    assert host.register(listener, "alerts", "alerts", "1")
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("boom", "test.crash")])
    rt = DualRuntimeManager(lab, host, restart_policy=FAST, storage=True)
    rt.start()
    wait_until(lambda: ("boom", "failed") in heard, what="the failed event")
    rt.shutdown()
    assert heard[0] == ("started", rt.session_id) and rt.session_id
    assert ("boom", "restarted") in heard and heard[-1] == ("stopped", True)


def test_budget_excess_raises_an_alarm_and_is_saved(host, tmp_path) -> None:
    import json

    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")],
                   poll_hz=500,
                   extra="[daqhub.budget]\nmax_cpu_percent = 0.01\ninterval_s = 0.1\n")
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    wait_until(lambda: any(a["what"].startswith("cpu:") for a in rt.alarms),
               what="a CPU budget alarm")
    report = rt.shutdown()
    assert report.ok
    saved = json.loads((rt.output_dirs()["v2"] / "budget.json").read_text())
    assert any(a["what"].startswith("cpu:") for a in saved["alarms"])
    assert saved["samples"] and "cpu_percent" in saved["samples"][-1]


@pytest.mark.timeout(30)
def test_a_v4_command_sent_right_after_start_waits_for_the_actor(host, tmp_path) -> None:
    """start() hands the actors to the loop; a command may arrive before an actor's first step."""
    lab = make_lab(host, tmp_path, v2=[], v4=[("c", "test.slow")])
    rt = DualRuntimeManager(lab, host, sinks={"storage": Recorder()}, restart_policy=FAST)
    rt.v4.loop.call_soon(time.sleep, 0.2)  # the loop is still busy when start() returns
    rt.start()
    try:
        assert rt.call("c", "add", 4, 5, timeout=10) == 9  # queued, served once it is up
        wait_until(lambda: rt.health_of("c").measurements > 0, what="a sample (a clean run)")
    finally:
        assert rt.shutdown().ok


@pytest.mark.timeout(30)
def test_a_routine_step_in_flight_at_shutdown_is_stopped_not_failed(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[],
                   extra='[[routines]]\ninstrument = "a"\nsteps = [["dwell", 1.5]]\n')
    rt = DualRuntimeManager(lab, host)
    rt.start()
    wait_until(lambda: rt.v2.workers["a"].busy_in == "dwell", what="the step in flight")
    report = rt.shutdown()
    assert report.routines[0]["state"] == "stopped" and report.ok, report.as_dict()


@pytest.mark.timeout(30)
def test_a_cycle_the_shutdown_cut_short_is_not_counted(host, tmp_path) -> None:
    """A routine stopped in its sleep (the step after it never ran) was reported "stopped,
    1 cycle(s)", the sleep counted as a step done."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[],
                   extra='[[routines]]\ninstrument = "a"\n'
                         'steps = [["add", 1, 2], ["sleep", 100], ["add", 3, 4]]\n')
    rt = DualRuntimeManager(lab, host)
    rt.start()
    state = rt.routines[0].state
    wait_until(lambda: state.step == 2, what="the routine in its sleep")
    report = rt.shutdown()
    out = io.StringIO()
    print_report(rt, report, out)
    assert "routine a: stopped, 0 cycle(s)" in out.getvalue()
    [routine] = report.routines
    assert (routine["cycles"], routine["steps_done"]) == (0, 1) and report.ok, routine


@pytest.mark.timeout(30)
def test_a_forced_instrument_is_never_listed_as_stopped_cleanly(host, tmp_path) -> None:
    """A v2 thread forced at shutdown that ended once its command did ended ``stopped``,
    and the report said "stopped cleanly" of it, with no NOT OK on its line."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host, phases=PhaseTimeouts(v4_s=0.1, v2_s=0.1, total_s=5))
    rt.start()
    rt.submit("a", "dwell", 1.0)  # ends within the second the shutdown waits after forcing
    wait_until(lambda: rt.v2.workers["a"].busy_in == "dwell", what="the command in flight")
    report = rt.shutdown()
    out = io.StringIO()
    print_report(rt, report, out)
    assert report.forced == ["a (v2 thread, busy in dwell)"] and not report.leaked, report
    [a] = report.instruments
    assert a["state"] == "stopped" and not a["ok"]
    assert "stopped cleanly: -" in out.getvalue()
    assert "<- NOT OK: forced at shutdown (v2 thread, busy in dwell)" in out.getvalue()


def test_budget_history_stays_bounded_and_spans_the_run() -> None:
    from daqhub.runtime.budget import BudgetMonitor

    mon = BudgetMonitor(lambda: {"queues": {"bridge": {"depth": 1, "capacity": 9}},
                                 "resources": {"big": "x" * 1000}},
                        recent=5, older=10, first_stride=2)
    for _ in range(400):
        mon.sample()
    history = mon.history()
    assert len(history) <= 15 and len(mon.samples) == 5
    assert "resources" not in history[0] and history[0]["queues"] == {"bridge": 1}
    times = [s["time"] for s in history]
    assert times == sorted(times)


@pytest.mark.timeout(30)
def test_asks_from_another_thread_do_not_wait_for_the_loop_and_a_full_mailbox_fails_them(
        host, tmp_path) -> None:
    """A script's command is on its way as soon as it is sent; what the loop cannot take
    (more than the mailbox holds) fails that command's own future, never the sender."""
    from daqhub.runtime.v4 import MailboxFull

    lab = make_lab(host, tmp_path, v2=[], v4=[("c", "test.counter")])
    rt = DualRuntimeManager(lab, host, sinks={"storage": Recorder()}, restart_policy=FAST)
    rt.start()
    try:
        assert rt.call("c", "add", 1, 1, timeout=10) == 2
        capacity = rt.v4.runners["c"].mailbox.capacity
        gate = threading.Event()
        rt.v4.loop.call_soon_threadsafe(gate.wait, 10)  # the loop is busy elsewhere
        futures = [rt.submit("c", "add", i, 0) for i in range(capacity + 20)]  # none waits
        gate.set()
        outcomes = []
        for fut in futures:
            try:
                outcomes.append(fut.result(10))
            except MailboxFull:
                outcomes.append("full")
        assert outcomes == [*range(capacity), *["full"] * 20]
    finally:
        rt.shutdown()


@pytest.mark.timeout(60)
def test_pandas_is_imported_before_any_instrument_polls(tmp_path) -> None:
    """pyarrow imports pandas (when installed) on its first array, holding the import lock
    for ~0.3-1 s. A lab without storage first did it in a poll: the v4 loop waited for a v2
    thread's import, and its actor was blamed for blocking the loop (an error on it)."""
    pytest.importorskip("pandas")
    script = f"""
import sys
from daqhub.config import parse
from daqhub.host import default_host
from daqhub.runtime.dual import DualRuntimeManager
host = default_host()
lab = parse('[daqhub]\\noutput_dir = "{tmp_path.as_posix()}"\\n', "empty.toml", host)
rt = DualRuntimeManager(lab, host, storage=False)
rt.start()
started = "pandas" in sys.modules
rt.shutdown()
print(started)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=50)
    assert r.stdout.strip() == "True", r.stdout + r.stderr


@pytest.mark.timeout(30)
def test_a_close_that_fails_at_shutdown_is_not_a_clean_stop(host, tmp_path) -> None:
    """A driver whose ``close()`` raised at shutdown (the output it switches off left on)
    ended ``stopped`` and was listed "stopped cleanly", exit 0, the failure only an error
    count on its line."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.badclose"), ("ok2", "test.counter")],
                   v4=[("b", "test.badclose")])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    wait_until(lambda: all(rt.health_of(i).measurements > 0 for i in ("a", "b", "ok2")),
               what="samples of every instrument")
    report = rt.shutdown()
    out = io.StringIO()
    print_report(rt, report, out)
    outcomes = {o["id"]: o for o in report.instruments}
    assert not report.ok and report.clean == ["ok2"], report.as_dict()
    for iid in ("a", "b"):
        assert outcomes[iid]["state"] == "stopped", outcomes[iid]
        assert outcomes[iid]["problem"] == ("its close() at shutdown failed: "
                                            "OUTP OFF not acknowledged"), outcomes[iid]
    assert "stopped cleanly: ok2" in out.getvalue()
