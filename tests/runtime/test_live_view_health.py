"""What the live view shows about health: errors cleared on recovery, polls counted once."""

from __future__ import annotations

import io

from polling import wait_until
from runtime_fakes import make_lab

from daqhub.cli.run import LiveView
from daqhub.runtime.dual import DualRuntimeManager


def final_frame(rt: DualRuntimeManager) -> str:
    out = io.StringIO()
    with LiveView(rt, plain=False, out=out, interval_s=1, duration_s=0) as view:
        view.update(1.0)
    return out.getvalue()


def test_last_error_clears_when_the_instrument_recovers(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[], v4=[("glitchy", "test.flaky")], poll_hz=20)
    rt = DualRuntimeManager(lab, host, storage=False)
    rt.start()
    try:
        wait_until(lambda: rt.health()["instruments"][0]["measurements"] > 0, what="recovery")
        h = rt.health()["instruments"][0]
        assert h["errors"] == 1 and h["restarts"] == 1 and h["state"] == "running"
        assert h["last_error"] == ""
        assert "transient glitch" not in final_frame(rt)
    finally:
        rt.shutdown()


def test_rate_counts_polls_not_channels(host, tmp_path) -> None:
    """A v4 poll of a two-channel instrument is one poll (it was counted once per channel)."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")],
                   poll_hz=20)
    rt = DualRuntimeManager(lab, host, storage=False)
    rt.start()
    try:
        wait_until(lambda: all(i["measurements"] >= 60 for i in rt.health()["instruments"]),
                   what="30 polls of each")
        for i in rt.health()["instruments"]:
            assert 0 < i["rate_hz"] < 1.5 * 20, i       # 40 if each channel counted a poll
        assert "polls/s" in final_frame(rt)
    finally:
        rt.shutdown()


def test_a_raising_command_fails_its_caller_but_does_not_restart_the_actor(host,
                                                                          tmp_path) -> None:
    """What V4Actor's docstring says: a command that raises is the caller's error; only
    start/read failures restart an actor."""
    import pytest

    lab = make_lab(host, tmp_path, v2=[], v4=[("c", "test.counter")], poll_hz=20)
    rt = DualRuntimeManager(lab, host, storage=False)
    rt.start()
    try:
        wait_until(lambda: rt.health()["instruments"][0]["measurements"] > 0, what="first poll")
        with pytest.raises(KeyError):  # raised in the driver's command
            rt.call("c", "buggy")
        h = rt.health()["instruments"][0]
        assert h["restarts"] == 0 and h["state"] == "running" and h["errors"] == 1
        assert rt.call("c", "add", 1, 2) == 3
    finally:
        rt.shutdown()


def test_the_live_view_text_is_made_once_from_the_newest_sample_when_someone_looks() -> None:
    from daqhub.runtime.health import InstrumentHealth

    made: list[int] = []

    def make(n: int) -> tuple[str, int]:
        made.append(n)
        return f"{n} V", n

    h = InstrumentHealth("dmm", "scpi.dmm", "v4")
    h.polled(1, make, 1)
    h.polled(1, make, 2)
    assert made == []  # nothing formatted while nobody looks
    assert (h.last_value, h.last_timestamp_ns) == ("2 V", 2) and made == [2]
    h.polled(3, None)  # samples none of which was accepted: the view keeps the last one
    assert (h.last_value, h.measurements, made) == ("2 V", 5, [2])
    h.produced(1, make, 3)
    h.sample_made("4 V", 4)  # a worker's mirror: made already, replaces what was pending
    assert (h.last_value, h.last_timestamp_ns, made) == ("4 V", 4, [2])
