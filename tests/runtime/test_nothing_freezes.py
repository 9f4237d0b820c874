"""Nothing a plugin or a driver does can freeze the runtime unnoticed."""

from __future__ import annotations

import re
import threading
import time
import types

import pytest
from polling import wait_until
from runtime_fakes import (
    CONNECT_GATE,
    PRODUCED,
    RELEASE,
    BlockingV4,
    OnCueV4,
    make_lab,
)

from daqhub.hookspecs import hookimpl
from daqhub.runtime.dual import (
    ALARM_STACKS_KEPT,
    ALARMS_KEPT,
    DualRuntimeManager,
    PhaseTimeouts,
)
from daqhub.runtime.v4 import RestartPolicy

FAST = RestartPolicy(max_restarts=3, window_s=60, backoff_first_s=0.01, backoff_max_s=0.05)


def rate(iid: str, seconds: float) -> float:
    before = PRODUCED.get(iid, 0)
    time.sleep(seconds)  # the measurement window itself
    return (PRODUCED.get(iid, 0) - before) / seconds


@pytest.mark.timeout(60)
def test_a_hook_that_sleeps_30_s_delays_only_itself(host, tmp_path) -> None:
    entered = threading.Event()

    def alerting(instrument_id: str, event: str, detail: str) -> None:
        entered.set()
        RELEASE.wait(30)  # the mail server that never answers

    plugin = types.SimpleNamespace(daqhub_instrument_event=hookimpl(alerting))
    assert host.register(plugin, "mailer", "mailer", "1")
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")],
                   v4=[("c", "test.counter"), ("cue", "test.oncue")], poll_hz=50)
    before = {t.name for t in threading.enumerate()}
    rt = DualRuntimeManager(lab, host, restart_policy=FAST,
                            phases=PhaseTimeouts(v4_s=2, v2_s=2, total_s=6))
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("c", 0) > 10, what="polling")
        base = rate("a", 3.0), rate("c", 3.0)  # on this machine, now, without the hook
        OnCueV4.cue.set()  # cue's crash is announced: the hook falls asleep
        assert entered.wait(10)
        wait_until(lambda: any(a["what"] == "plugin:mailer" for a in rt.alarms), timeout=5,
                   what="an alarm naming the plugin")
        hooked = rate("a", 3.0), rate("c", 3.0)
        assert hooked[0] >= 0.9 * base[0] and hooked[1] >= 0.9 * base[1], (base, hooked)
        assert min(base) > 25, base  # and the instruments did poll at a real rate
    finally:
        t0 = time.monotonic()
        report = rt.shutdown()
        took = time.monotonic() - t0
    assert took < 6 + 1.5 and report.ok, report.as_dict()
    assert any("mailer" in a["message"] and "busy at shutdown" in a["message"]
               for a in rt.alarms), rt.alarms
    left = {t.name for t in threading.enumerate()} - before
    # the event loop and every instrument thread ended; only the plugin's own delivery
    # thread is still inside its hook (a thread cannot be killed), and it is named above
    assert left <= {"daqhub-notify:mailer"}, left
    assert not rt.v4.thread.is_alive()


@pytest.mark.timeout(60)
def test_a_v4_read_calling_time_sleep_is_named_and_counted(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[], v4=[("blocker", "test.blocking"),
                                              ("ok", "test.counter")], poll_hz=50)
    rt = DualRuntimeManager(lab, host, restart_policy=FAST)
    rt.start()
    try:
        wait_until(lambda: "blocker" in BlockingV4.returned_at, timeout=20,
                   what="the blocking read to return")
        at = PRODUCED.get("ok", 0)
        wait_until(lambda: PRODUCED.get("ok", 0) >= at + 5, timeout=1.0,
                   what="the other actor to poll again as soon as the loop is free")
        alarm = next(a for a in rt.alarms if a["what"] == "loop:blocker")
        assert "v4 actor blocker (in read)" in alarm["message"]
        assert "time.sleep(2)" in alarm["stack"]
        h = rt.health_of("blocker")
        assert h.errors == 1 and "read blocked the event loop" in h.last_error
        assert h.restarts == 0 and h.state == "running"
    finally:
        assert rt.shutdown().ok


@pytest.mark.timeout(60)
@pytest.mark.parametrize("poll_hz", [2000, 2])
def test_the_watchdog_wakes_the_loop_only_when_it_stopped_making_passes(
        host, tmp_path, poll_hz: float) -> None:
    # each heartbeat wakes the loop through its pipe, and that read lets go of the GIL: a
    # loop busy polling makes passes and needs none; an idle one still gets them (a blocked
    # one too: the test above)
    lab = make_lab(host, tmp_path, v2=[], v4=[("c", "test.counter")], poll_hz=poll_hz)
    rt = DualRuntimeManager(lab, host, restart_policy=FAST)
    beats: list[float] = []
    post = rt.v4.loop.call_soon_threadsafe

    def counting(callback, *args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread() is rt.watchdog.thread:
            beats.append(time.monotonic())
        return post(callback, *args, **kwargs)
    rt.v4.loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("c", 0) >= 2, timeout=20, what="the actor to poll")
        beats.clear()
        time.sleep(1.0)  # the window whose heartbeats are counted
        ticks = 1.0 / rt.watchdog.tick_s
        if poll_hz > 100:
            assert len(beats) <= 2, f"{len(beats)} heartbeats woke a loop busy polling"
        else:
            assert len(beats) >= ticks / 4, f"an idle loop got {len(beats)} heartbeats"
    finally:
        assert rt.shutdown().ok


@pytest.mark.timeout(60)
def test_an_instrument_far_below_its_requested_rate_raises_an_alarm(host, tmp_path) -> None:
    import json

    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")],
                   v4=[("slowpoke", "test.slowread")], poll_hz=50)
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.rates.after_s = 1.0
    rt.start()
    try:
        wait_until(lambda: any(a["what"] == "rate:slowpoke" for a in rt.alarms), timeout=15,
                   what="a rate alarm naming slowpoke")
        shown = rt.health()["alarms"]       # what the live view shows
        msg = next(a["message"] for a in shown if a["what"] == "rate:slowpoke")
        assert "slowpoke polls at" in msg and "of the 50 Hz asked" in msg
        assert not any(a["what"] == "rate:a" for a in shown)
    finally:
        rt.shutdown()
    saved = json.loads((rt.output_dirs()["v2"] / "budget.json").read_text())
    assert any(a["what"] == "rate:slowpoke" for a in saved["alarms"])
    slow = {i["id"]: i for i in saved["instruments"]}["slowpoke"]
    assert any(e["event"] == "slow" for e in slow["events"])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind,where", [("lateconnect", "connect"), ("latefactory", "__init__")])
def test_a_v2_connect_that_does_not_return_is_named_while_it_waits(host, tmp_path, kind: str,
                                                                   where: str) -> None:
    """A v2 driver's connect() (or its making: a vendor library opened in ``__init__``) that
    blocks cannot be interrupted: the instrument stayed ``starting`` with no word until the
    shutdown forced it. Past ``start_timeout_s`` it is named, with the driver's line its
    thread waits in; it still runs once the connect returns."""
    lab = make_lab(host, tmp_path, v2=[("late", f"test.{kind}"), ("a", "test.counter")],
                   v4=[], extra="[daqhub.restart]\nstart_timeout_s = 0.3\n")
    rt = DualRuntimeManager(lab, host)
    CONNECT_GATE.clear()
    rt.start()
    try:
        wait_until(lambda: any(a["what"] == "connect:late" for a in rt.alarms), timeout=10,
                   what="an alarm naming late's connect")
        [alarm] = [a for a in rt.health()["alarms"] if a["what"] == "connect:late"]
        assert re.fullmatch(r"late: its v2 driver's connect\(\) has not returned after [\d.]+ s "
                            rf"\(start_timeout_s = 0.3 s\) at .*runtime_fakes.py:\d+ in {where}; a "
                            r"thread cannot be interrupted: the instrument waits for it",
                            alarm["message"]), alarm["message"]
        assert "runtime_fakes.py" in alarm["stack"] and f"in {where}" in alarm["stack"]
        assert rt.health_of("late").state == "starting"
        assert not any(a["what"] == "connect:a" for a in rt.alarms)
        CONNECT_GATE.set()
        wait_until(lambda: rt.health_of("late").measurements > 0, what="late's samples")
        assert [a["what"] for a in rt.alarms].count("connect:late") == 1  # once per attempt
    finally:
        CONNECT_GATE.set()
        report = rt.shutdown()
    assert report.ok, report.as_dict()  # a connect that returned late is a connect


def test_alarms_are_all_listed_but_only_the_newest_keep_their_stacks(host, tmp_path) -> None:
    """A lab that keeps blocking its loop must not grow by a stack (KBs) per alarm: the
    soak's RSS slope was those stacks."""
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[])
    rt = DualRuntimeManager(lab, host)
    n = ALARMS_KEPT + 30
    for i in range(n):  # what the watchdog raises for each blocked-loop episode
        rt._alarm("loop:blocker", f"episode {i}", {"stack": f"frame {i}\n" * 200})
    alarms = list(rt.alarms)
    assert rt.alarms_total == n
    assert rt.health()["alarms_total"] == n  # what the data service answers (daqhub view)
    assert [a["message"] for a in alarms] == [f"episode {i}" for i in range(30, n)]
    assert [a["stack"].splitlines()[0] for a in alarms[-ALARM_STACKS_KEPT:]] == [
        f"frame {i}" for i in range(n - ALARM_STACKS_KEPT, n)]
    assert not any("stack" in a for a in alarms[:-ALARM_STACKS_KEPT])


def test_an_installed_plugins_line_is_not_taken_for_the_standard_library() -> None:
    """Outside a venv (pyenv, conda, a container) site-packages lies inside the standard
    library's directory: every plugin frame counted as the standard library's, and the
    blocked-connect alarm named ``threading.py in wait`` again."""
    from daqhub.runtime.watchdog import in_stdlib

    assert in_stdlib(threading.__file__)
    pyenv = {"stdlib": "/py/lib/python3.11", "purelib": "/py/lib/python3.11/site-packages",
             "platlib": "/py/lib/python3.11/site-packages"}
    assert in_stdlib("/py/lib/python3.11/threading.py", pyenv)
    assert not in_stdlib("/py/lib/python3.11/site-packages/acme/driver.py", pyenv)
