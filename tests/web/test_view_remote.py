"""`daqhub view URL`: the dashboard of a run in another process, fed by its data service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_chromium
from pixels import colour_pixels
from webtest import DEMO, LINE, look_at, wait_for_line

pytest.importorskip("daqhub.flight_client", reason="the live data service client (issue 16)")


def daqhub(*args: str, out: Path, cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "daqhub", *args], stdout=sink,
                                stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}api/state", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def wait_state(url: str, cond: Any, what: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = state(url)
        if cond(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {s}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


@needs_chromium
@pytest.mark.timeout(300)
def test_view_shows_a_run_served_by_another_process(tmp_path: Path) -> None:
    run_out, view_out = tmp_path / "run.txt", tmp_path / "view.txt"
    run = daqhub("run", "--plain", "--interval", "1", "--serve", "127.0.0.1:0",
                 "--output-dir", str(tmp_path / "data"), out=run_out, cwd=tmp_path)
    view = None
    try:
        service = wait_for_line(run_out, r"live data -> (grpc\S*://\S+)", run, 60).group(1)
        view = daqhub("view", service, "--web", "127.0.0.1:0", out=view_out, cwd=tmp_path)
        url = wait_for_line(view_out, r"-> (http://127\.0\.0\.1:\d+/)", view, 60).group(1)
        first = wait_state(url, lambda s: all(r["state"] == "receiving" and r["rate_hz"] > 0
                                              for r in s["instruments"]),
                           "data from every instrument")
        assert {r["id"]: r["flavor"] for r in first["instruments"]} == DEMO
        assert {r["id"]: r["type"] for r in first["instruments"]}["dmm"] == "scpi.dmm"
        assert {r["id"]: r["requested_hz"] for r in first["instruments"]}["stage"] == 10
        assert all(r["errors"] is None for r in first["instruments"])  # no health action
        assert {c["key"] for c in first["channels"]} >= {"stage/position", "psu/current"}
        wait_state(url, lambda s: any(f["name"] == "v2: stage/position" and f["rows"] > 0
                                      for f in s["files"]), "the session's stored channels")
        seen = asyncio.run(look_at(url, tmp_path))
        assert seen["first"] != seen["moved"]
        drawn = {k: colour_pixels(Path(str(seen["shot"])), r, LINE)
                 for k, r in dict(seen["rects"]).items()}  # type: ignore[call-overload]
        assert len(drawn) >= 4 and all(n >= 40 for n in drawn.values()), drawn
        assert stop(run) == 0, run_out.read_text()
        ended = wait_state(url, lambda s: "the run ended" in s["title"], "the end of the run")
        assert all(r["state"] == "ended" for r in ended["instruments"])
    finally:
        stop(run)
        if view is not None:
            assert stop(view) == 0, view_out.read_text()


@pytest.mark.timeout(240)
def test_view_takes_states_from_the_service_and_forwards_commands(tmp_path: Path) -> None:
    from daqhub.cli.run import demo_lab_text

    lab = tmp_path / "lab.toml"
    lab.write_text(demo_lab_text() + '\n[daqhub.serve]\naddress = "127.0.0.1:0"\n'
                                     'actions = true\n')
    run_out, view_out = tmp_path / "run.txt", tmp_path / "view.txt"
    token_env = {"DAQHUB_TOKEN": "service-token-for-tests"}  # the service's and the client's
    run = daqhub("run", str(lab), "--plain", "--interval", "1", "--output-dir",
                 str(tmp_path / "data"), out=run_out, cwd=tmp_path, env=token_env)
    view = None
    try:
        service = wait_for_line(run_out, r"live data -> (grpc\S*://\S+)", run, 60).group(1)
        view = daqhub("view", service, "--web", "127.0.0.1:0", "--commands", out=view_out,
                      cwd=tmp_path, env=token_env)
        m = wait_for_line(view_out, r"-> (http://127\.0\.0\.1:\d+/)\?token=(\S+)", view, 60)
        url, token = m.group(1), m.group(2)
        s = wait_state(url, lambda s: all(r["state"] == "running" for r in s["instruments"])
                       and s["routines"], "the service's health")
        assert all(r["errors"] == 0 and r["restarts"] == 0 for r in s["instruments"])
        assert {r["instrument"] for r in s["routines"]} == {"stage", "rotator", "slider", "psu"}
        call = json.dumps({"instrument": "psu", "method": "set_output",
                           "args": [True]}).encode()
        req = urllib.request.Request(f"{url}api/call", data=call, method="POST", headers={
            "Content-Type": "application/json", "X-Daqhub-Token": token})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read()) == {"ok": True, "result": None}
        req = urllib.request.Request(f"{url}api/call", data=call, method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 401
    finally:
        assert stop(run) == 0, run_out.read_text()
        if view is not None:
            assert stop(view) == 0, view_out.read_text()


@pytest.mark.timeout(30)
def test_a_live_stream_that_never_opens_is_an_error_naming_it_and_the_limit() -> None:
    from web_fakes import FakeService

    from daqhub.flight_client import connect
    from daqhub.web.view import FlightSource

    service = FakeService(stall_live=True)
    try:
        conn = connect(service.url, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"opening the live stream of dmm/v: no answer "
                                               r"from grpc://127\.0\.0\.1:\d+ within 0\.5 s"):
            FlightSource(conn, service.url)
        assert time.monotonic() - started < 5
        conn.close()
    finally:
        service.close()


@pytest.mark.timeout(30)
def test_a_slow_health_answer_marks_the_states_stale_and_is_asked_again() -> None:
    from polling import wait_until
    from web_fakes import FakeService

    from daqhub.flight_client import connect
    from daqhub.web.view import FlightSource

    service = FakeService(health=("slow", "ok"))
    source = FlightSource(connect(service.url, timeout=0.5), service.url)
    try:
        wait_until(lambda: "instrument states stale: health: no answer" in source.title(),
                   "the stale mark", timeout=10)
        assert "within 0.5 s" in source.title()
        wait_until(lambda: source.health()["instruments"][0]["state"] == "running"
                   and "stale" not in source.title(), "the next health answer", timeout=10)
    finally:
        source.close()
        service.close()


@pytest.mark.timeout(30)
def test_a_refused_health_action_turns_health_off_for_the_session() -> None:
    from polling import wait_until
    from web_fakes import FakeService

    from daqhub.flight_client import connect
    from daqhub.web.view import FlightSource

    service = FakeService(health=("refuse", "ok"))
    source = FlightSource(connect(service.url, timeout=0.5), service.url)
    try:
        wait_until(lambda: service.health_calls >= 1, "the health request")
        assert source.health()["instruments"][0]["state"] in ("silent", "receiving")
        assert "stale" not in source.title()
    finally:
        source.close()
        service.close()
    assert service.health_calls == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("end, says", [("release", "ended"), ("break_live", "link lost")])
def test_every_row_says_when_the_run_ended_or_the_link_was_lost(end: str, says: str) -> None:
    """The rows kept the service's last health answer ("running", its rate) after the run
    ended, and after its process died (taking the data failed before the health was read)."""
    import contextlib

    from polling import wait_until
    from web_fakes import FakeService

    from daqhub.flight_client import connect
    from daqhub.web.model import DashboardModel
    from daqhub.web.view import FlightSource

    service = FakeService()
    source = FlightSource(connect(service.url, timeout=0.5), service.url)
    model = DashboardModel(source)

    def row() -> dict[str, Any]:
        with contextlib.suppress(ConnectionError):  # the link lost: shown as the problem
            model.update()
        return model.state(0)["instruments"][0]  # type: ignore[no-any-return]

    try:
        wait_until(lambda: row()["state"] == "running", "the service's health", every=0.1)
        getattr(service, end).set()
        wait_until(lambda: row()["state"] == says, f"the row to say {says}", every=0.1)
        assert row()["rate_hz"] == 0.0
        assert model.state(0)["ended"] is (says == "ended")
        assert source.title().endswith("(the run ended)" if says == "ended" else "(link lost)")
    finally:
        source.close()
        service.close()


@pytest.mark.timeout(30)
def test_new_alarms_show_after_the_service_s_list_is_full() -> None:
    """The service sends its newest alarms only (the run keeps 500) and how many the run
    raised; the page counted the list's length, which stops growing, and showed no alarm
    after it was full."""
    from polling import wait_until
    from web_fakes import FakeService

    from daqhub.flight_client import connect
    from daqhub.web.model import DashboardModel
    from daqhub.web.view import FlightSource

    def alarm(i: int) -> dict[str, Any]:
        return {"time": 1e9 + i, "what": "test", "message": f"alarm {i}"}

    service = FakeService()
    service.alarms, service.alarms_total = [alarm(0), alarm(1), alarm(2)], 3
    source = FlightSource(connect(service.url, timeout=0.5), service.url)
    model = DashboardModel(source)

    def shown() -> list[str]:
        model.update()
        return [a["message"] for a in model.state(0)["alarms"]]

    try:
        wait_until(lambda: shown() == ["alarm 0", "alarm 1", "alarm 2"], "the alarms",
                   every=0.1)
        service.alarms = [alarm(1), alarm(2), alarm(3)]  # full: the oldest makes room
        service.alarms_total = 4
        wait_until(lambda: shown()[-1] == "alarm 3", "the new alarm", every=0.1)
        assert shown() == ["alarm 0", "alarm 1", "alarm 2", "alarm 3"]
    finally:
        source.close()
        service.close()
