"""A plugin that misbehaves in ways the runtime did not foresee costs only its own samples,
is named with its cause, and never freezes the shutdown or ends a shared thread."""

from __future__ import annotations

import threading

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, bare_bridge, make_lab

from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.runtime.dual import DualRuntimeManager, PhaseTimeouts
from daqhub.runtime.restarts import RestartPolicy

FAST = RestartPolicy(max_restarts=3, window_s=30, backoff_first_s=0.01, backoff_max_s=0.05)


class HangingClose:
    """A storage sink whose close never returns (a network share that stopped answering)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.rows = 0

    def write(self, batch) -> None:
        self.rows += batch.num_rows

    def flush(self) -> None:
        pass

    def close(self) -> list[str]:
        self.release.wait(60)
        return []


class Recorder(HangingClose):
    def close(self) -> list[str]:
        return ["recorded"]


@pytest.mark.timeout(30)
def test_a_sink_whose_close_hangs_is_named_and_the_shutdown_keeps_its_budget(host,
                                                                             tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    hung, fine = HangingClose(), Recorder()
    rt = DualRuntimeManager(lab, host, sinks={"share": hung, "disk": fine},
                            phases=PhaseTimeouts(total_s=2.0))
    rt.start()
    wait_until(lambda: PRODUCED.get("a", 0) >= 3, what="3 polls")
    try:
        report = rt.shutdown()
    finally:
        hung.release.set()
    assert report.duration_s < 5, report.duration_s
    assert not report.ok
    assert any("sink share" in leak and "close()" in leak for leak in report.leaked), report
    assert any("closing share did not finish" in e for e in report.errors), report.errors
    assert report.sink_results == {"disk": ["recorded"]}  # the other sink closed normally


@pytest.mark.timeout(30)
def test_a_v2_read_with_a_none_in_it_is_its_drivers_crash_not_the_bridges(host,
                                                                          tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter"), ("b", "test.noneitem")], v4=[])
    rt = DualRuntimeManager(lab, host, restart_policy=FAST)
    rt.start()
    wait_until(lambda: rt.health_of("b").state == "failed", what="b failing on its bad reads")
    def stored() -> int:
        return rt.counts().get("a", {}).get("count", 0)

    seen = stored()
    wait_until(lambda: stored() > seen + 3, what="a's samples still stored")
    assert rt.bridge is not None and rt.bridge.thread.is_alive()
    report = rt.shutdown()
    outcome = {o["id"]: o for o in report.instruments}
    assert outcome["a"]["ok"] and outcome["a"]["errors"] == 0, outcome["a"]
    assert not outcome["b"]["ok"] and outcome["b"]["errors"] >= 4, outcome["b"]
    assert "returned NoneType None as item 0 of 3" in outcome["b"]["last_error"]


@pytest.mark.timeout(30)
def test_the_bridge_refuses_a_malformed_read_and_keeps_the_others() -> None:
    """A read that reaches the bridge malformed (published past the worker's check) is
    refused whole and named; the thread every v2 instrument needs lives on."""
    spec = ChannelSpec("x", "scalar", "V")
    bridge, v2_in, out, errors = bare_bridge({("a", "x"): spec, ("b", "x"): spec})
    bridge.start()
    try:
        for t in range(1, 4):
            v2_in.publish(("b", [None, Measurement("b", "x", t, Scalar(9.0, "V"))]))  # type: ignore[list-item]
            v2_in.publish(("a", [Measurement("a", "x", t, Scalar(1.0 * t, "V"))]))
        got: list[float] = []
        wait_until(lambda: got.extend(v for b in out.get_many(0.05)
                                      for v in b.column("value").to_pylist()) or len(got) >= 3,
                   what="a's three samples")
        assert got == [1.0, 2.0, 3.0] and bridge.thread.is_alive()
    finally:
        assert bridge.stop(5)
    assert {iid for iid, _ in errors} == {"b"} and len(errors) == 3
    assert "rejected a read of 2 item(s): AttributeError" in errors[0][1]
    assert bridge.rejected == 6 and bridge.count("v2", "b", "x") == 0


@pytest.mark.timeout(30)
def test_a_row_with_a_nan_timestamp_costs_that_row_not_its_window() -> None:
    spec = ChannelSpec("x", "scalar", "V")
    bridge, v2_in, out, errors = bare_bridge({("n", "x"): spec}, window_s=0.2)
    stamps = [1, 2, float("nan"), 4, 5.0, 6.5, 7, None, 9]
    for i, t in enumerate(stamps):  # queued before the bridge starts: one window
        v2_in.publish(("n", [Measurement("n", "x", t, Scalar(float(i), "V"))]))  # type: ignore[arg-type]
    bridge.start()
    try:
        got: list[tuple[int, float]] = []

        def six_rows() -> bool:
            for b in out.get_many(0.05):
                got.extend(zip(b.column("timestamp_ns").to_pylist(),
                               b.column("value").to_pylist(), strict=True))
            return len(got) >= 6

        wait_until(six_rows, what="the six good rows")
    finally:
        assert bridge.stop(5)
    assert sorted(got) == [(1, 0.0), (2, 1.0), (4, 3.0), (5, 4.0), (7, 6.0), (9, 8.0)]
    assert bridge.rejected == 3 and bridge.count("v2", "n", "x") == 6
    assert [iid for iid, _ in errors] == ["n"] * 3
    assert all("of channel 'x'" in m and "timestamp_ns must be a whole number" in m
               for _, m in errors), errors
    assert {m.rsplit(" has ", 1)[1] for _, m in errors} == {"float nan", "float 6.5",
                                                             "NoneType None"}


@pytest.mark.timeout(30)
def test_nan_timestamps_in_a_run_are_that_instruments_errors(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("n", "test.nants")], v4=[])
    rt = DualRuntimeManager(lab, host)
    rt.start()
    wait_until(lambda: PRODUCED.get("n", 0) >= 10, what="10 polls")
    report = rt.shutdown()
    [outcome] = report.instruments
    produced = PRODUCED["n"]
    bad = (produced + 1) // 2  # the odd reads
    assert report.counts["n"] == {"count": produced - bad, "x": produced - bad}
    assert outcome["errors"] == 2 * bad  # one per refused row, each channel's
    assert "timestamp_ns must be a whole number" in outcome["last_error"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind, where", [("test.cancelread", "read"),
                                         ("test.cancelstart", "start")])
def test_an_actors_own_cancelled_error_is_its_crash(host, tmp_path, kind, where) -> None:
    """It used to end the runner in silence: live view ``running`` for ever, no error."""
    lab = make_lab(host, tmp_path, v2=[], v4=[("good", "test.counter"), ("bad", kind)])
    rt = DualRuntimeManager(lab, host, restart_policy=FAST)
    rt.start()
    wait_until(lambda: rt.health_of("bad").state == "failed", what="bad failing")
    # failed is set before the runner closes the actor and ends: its task ends just after
    wait_until(rt.v4.runners["bad"].task.done, what="bad's runner to end")
    report = rt.shutdown()
    outcome = {o["id"]: o for o in report.instruments}
    assert outcome["good"]["ok"], outcome["good"]
    assert outcome["bad"]["state"] == "failed" and outcome["bad"]["restarts"] == 3
    assert outcome["bad"]["problem"] == ("failed" if where == "read" else "never connected")
    assert f"bad.{where} raised CancelledError, but nothing cancelled it" in \
        outcome["bad"]["last_error"]
    assert "runtime_fakes.py" in outcome["bad"]["last_error"]  # the actor's own line
