"""The dashboard server against an in-process lab: what the page is sent, and who may ask."""

from __future__ import annotations

import http.client
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until
from web_fakes import HELD, ScriptedSource, web_host, web_lab
from webtest import dashboard, request, wait_state

from daqhub.config import ConfigError
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.web.server import DashboardServer
from daqhub.web.settings import WebSettings, parse_listen, web_settings
from daqhub.web.source import RuntimeSource


@pytest.mark.timeout(90)
def test_the_page_gets_every_instrument_and_every_channel_kind(tmp_path: Path) -> None:
    routine = ('[[routines]]\ninstrument = "scope0"\nrepeat = true\n'
               'steps = [["add", 1, 2], ["sleep", 0.05], ["add", 3, 4]]')
    with dashboard(tmp_path, WebSettings(port=0), extra=routine) as (rt, server):
        state = wait_state(server, lambda s: s["frames"] and s["traces"] and all(
            r["state"] == "running" and r["rate_hz"] > 0 for r in s["instruments"])
            and any(f["path"].endswith("session.h5") for f in s["files"])
            and len(s["series"].get("scope0/level", {}).get("t", ())) >= 2,
            "running instruments, a trace, a frame, two points of a series and the files")
        routines = wait_state(server, lambda s: s["routines"][0]["cycles"] >= 1,
                              "a routine cycle")["routines"]
        assert routines[0]["steps"] == 3 and routines[0]["repeat"] is True
        assert routines[0]["instrument"] == "scope0" and routines[0]["state"] == "running"
        rows = {r["id"]: r for r in state["instruments"]}
        assert {i: (r["flavor"], r["type"], r["requested_hz"]) for i, r in rows.items()} == {
            "scope0": ("v2", "webtest.scope", 20.0), "wave0": ("v4", "webtest.wave", 20.0)}
        assert rows["scope0"]["values"]["level"].endswith(" V")
        assert rows["scope0"]["values"]["frame"].startswith("24x32")
        assert rows["wave0"]["values"]["wave"].endswith("V")
        kinds = {c["key"]: c["kind"] for c in state["channels"]}
        assert kinds == {"scope0/level": "scalar", "scope0/trace": "spectrum",
                         "scope0/frame": "image", "wave0/wave": "scalar"}
        trace = state["traces"]["scope0/trace"]
        assert len(trace["x"]) == len(trace["y"]) == 64 and trace["x"][0] == 400.0
        assert max(trace["y"]) > 0.5
        frame = state["frames"]["scope0/frame"]
        assert (frame["h"], frame["w"]) == (24, 32) and len(frame["z"]) == 24
        assert max(map(max, frame["z"])) == 255 and frame["hi"] > 500
        level = state["series"]["scope0/level"]
        assert len(level["t"]) == len(level["v"]) >= 2
        # a refresh carries only what came after the tick the page saw
        tick, last_t = state["tick"], level["t"][-1]
        newer = wait_state(server, lambda s: "scope0/level" in s["series"], "new points",
                           since=tick)
        assert "channels" not in newer
        assert all(t > last_t for t in newer["series"]["scope0/level"]["t"])
        # alarms as they come: once each
        rt._alarm("test", "storage is 95% full")
        alarmed = wait_state(server, lambda s: s["alarms"], "the alarm", since=newer["tick"])
        assert [a["message"] for a in alarmed["alarms"]] == ["storage is 95% full"]
        _, later, _ = request(server, f"/api/state?since={alarmed['tick']}")
        assert later["alarms"] == []


@pytest.mark.timeout(60)
def test_a_stalled_page_drops_its_own_data_and_never_slows_the_run(tmp_path: Path) -> None:
    rt = DualRuntimeManager(web_lab(web_host(), tmp_path, poll_hz=50), web_host())
    rt.start()
    try:
        source = RuntimeSource(rt, capacity=5)  # nobody takes from it
        before = rt.health_of("scope0").measurements
        wait_until(lambda: source.sub.dropped >= 50, "the stalled page to drop 50 items",
                   timeout=20, every=0.05)
        assert rt.health_of("scope0").measurements - before >= 15
        assert rt.health()["queues"]["web"]["lossless"] is False
        assert source.health()["dropped"] == source.sub.dropped
        source.close()
        assert "web" not in rt.health()["queues"]
    finally:
        assert rt.shutdown().ok


@pytest.mark.timeout(60)
def test_beyond_127_0_0_1_reads_need_the_token(tmp_path: Path) -> None:
    settings = web_settings(None, "127.0.0.2:0")  # another loopback address counts as beyond
    assert settings is not None and settings.token_required and len(settings.token) >= 16
    with dashboard(tmp_path, settings) as (_, server):
        for path in ("/", "/api/state", "/vendor/plotly.min.js", "/static/app.js"):
            status, text, _ = request(server, path)
            assert status == 401 and "needs its token" in text, (path, status)
            status, text, _ = request(server, path, {"X-Daqhub-Token": settings.token + "x"})
            assert (status, text) == (403, "wrong token")
        status, page, headers = request(server, f"/?token={settings.token}")
        assert status == 200 and "vendor/plotly.min.js" in page
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")  # offline
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        status, js, _ = request(server, "/vendor/plotly.min.js", {"Cookie": cookie})
        assert status == 200 and "plotly" in js[:2000].lower() and len(js) > 1_000_000
        status, state, _ = request(server, "/api/state", {"X-Daqhub-Token": settings.token})
        assert status == 200 and len(state["instruments"]) == 2


@pytest.mark.timeout(60)
def test_commands_need_the_lab_s_permission_and_the_token_in_a_header(tmp_path: Path) -> None:
    with dashboard(tmp_path, WebSettings(port=0, token="s3cret-token")) as (_, server):
        status, text, _ = request(server, "/api/call", {"X-Daqhub-Token": "s3cret-token"},
                                  {"instrument": "scope0", "method": "add", "args": [2, 3]})
        assert status == 403 and "read-only" in text
    settings = web_settings({"commands": True}, "127.0.0.1:0")
    assert settings is not None and settings.token and not settings.token_required
    call = {"instrument": "scope0", "method": "add", "args": [2, 3]}
    with dashboard(tmp_path, settings) as (_, server):
        assert request(server, "/api/state")[0] == 200  # reads on loopback stay open
        status, text, _ = request(server, "/api/call", {}, call)
        assert status == 401
        status, text, _ = request(server, "/api/call", {"Cookie": f"daqhub_token="
                                                                  f"{settings.token}"}, call)
        assert status == 401, "a cookie alone must not command"
        status, text, _ = request(server, "/api/call", {"X-Daqhub-Token": "nope"}, call)
        assert status == 403
        good = {"X-Daqhub-Token": settings.token}
        assert request(server, "/api/call", good, call)[1] == {"ok": True, "result": 5}
        status, text, _ = request(server, "/api/call", good, {**call, "method": "_close"})
        assert status == 400
        status, text, _ = request(server, "/api/call", good, {**call, "instrument": "nobody"})
        assert status == 404 and "nobody" in text
        status, text, _ = request(server, "/api/call", good, {**call, "args": [1]})
        assert status == 400 and "add takes 2 arguments" in text


@pytest.mark.timeout(60)
def test_a_loopback_page_answers_only_to_loopback_names(tmp_path: Path) -> None:
    with dashboard(tmp_path, WebSettings(port=0)) as (_, server):
        status, text, _ = request(server, "/api/state", {"Host": f"evil.example:{server.port}"})
        assert status == 403 and "Host" in text
        assert request(server, "/api/state", {"Host": f"localhost:{server.port}"})[0] == 200


def test_listen_addresses_parse_or_say_what_is_wrong() -> None:
    assert parse_listen("8640") == ("127.0.0.1", 8640)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:8640") == ("::1", 8640)
    for bad, why in (("70000", "0 to 65535"), ("::1:80", "[addr]:PORT"), (":80", "empty host"),
                     ("host:x", "0 to 65535")):
        with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
            parse_listen(bad)
    assert web_settings(None, None) is None
    assert web_settings({"enabled": False}, None) is None
    s = web_settings({"listen": "localhost:9000", "rate_hz": 2}, None)
    assert s == WebSettings("localhost", 9000, "", False, 2.0, 60.0)
    assert web_settings({"listen": "0.0.0.0:9000", "token": "mine-mine"}, "9001") == \
        WebSettings("127.0.0.1", 9001, "mine-mine", False, 4.0, 60.0)


def test_the_web_table_is_validated_with_lines(tmp_path: Path) -> None:
    host = web_host()
    web_lab(host, tmp_path, extra='[daqhub.web]\nlisten = "127.0.0.1:9000"\ncommands = true')
    with pytest.raises(ConfigError) as err:
        web_lab(host, tmp_path, extra='[daqhub.web]\nlisten = "here"\ncomand = true')
    text = str(err.value)
    assert "web-test.toml:5: unknown key 'comand'" in text and "did you mean 'commands'" in text
    assert "web-test.toml:4: web.listen" in text


@pytest.mark.timeout(60)
def test_run_refuses_a_bad_or_busy_address_before_starting(tmp_path: Path) -> None:
    def run(listen: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daqhub", "run", "--no-storage",
                               "--duration", "1", "--web", listen], capture_output=True,
                              text=True, timeout=30, cwd=tmp_path)

    bad = run("127.0.0.1:70000")
    assert bad.returncode == 2 and "0 to 65535" in bad.stderr and "starting" not in bad.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run(f"127.0.0.1:{taken.getsockname()[1]}")
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1:" in busy.stderr
    assert "starting" not in busy.stdout


@pytest.mark.timeout(60)
def test_any_source_can_feed_the_page_and_a_failing_one_is_shown_not_hidden() -> None:
    source = ScriptedSource()
    server = DashboardServer(source, WebSettings(port=0, rate_hz=20))
    server.start()
    try:
        state = wait_state(server, lambda s: s["instruments"][0]["values"]["temp"], "a value")
        assert state["instruments"][0]["values"]["temp"].endswith(" K")
        assert state["title"] == "scripted" and state["problem"] == ""
        source.fail = True
        failing = wait_state(server, lambda s: s["problem"], "the problem on the page")
        assert "link to the remote run lost" in failing["problem"]
        source.fail = False
        wait_state(server, lambda s: not s["problem"], "the page to recover")
    finally:
        assert server.stop(10)


@pytest.mark.timeout(30)
def test_idle_connections_are_closed_and_those_beyond_the_limit_refused_at_once() -> None:
    # yield_after_s: none of the held connections has waited long enough to give its place
    server = DashboardServer(ScriptedSource(), WebSettings(port=0), max_connections=3,
                             request_wait_s=0.5, yield_after_s=60)
    server.start()
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        held[1].sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half the headers
        assert server.gate is not None
        wait_until(lambda: server.gate is not None and server.gate.open == 3,
                   "three connections held")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
            answer = extra.recv(4096)  # at once: 503, then closed
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        for s in held:  # closed by the server, none having sent a whole request in time
            assert s.recv(4096) == b""
        assert request(server, "/api/state")[0] == 200  # room again
    finally:
        for s in held:
            s.close()
        assert server.stop(10)


class SlowCommands(ScriptedSource):
    """Commands that are answered when the test lets them."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def call(self, instrument: str, method: str, args: Any) -> Any:
        self.started.set()
        assert self.release.wait(10), "the test never released the command"
        return 42


@pytest.mark.timeout(30)
def test_a_newcomer_takes_the_place_of_the_connection_waiting_longest() -> None:
    """A client holding every place with idle connections, re-opened before each deadline,
    used to lock the token holder out with 503s; a request being answered keeps its place."""
    source = SlowCommands()
    settings = WebSettings(port=0, commands=True, token="tok")
    server = DashboardServer(source, settings, max_connections=3, yield_after_s=0)
    server.start()
    held: list[socket.socket] = []
    try:
        answered: list[tuple[int, Any, Any]] = []
        command = threading.Thread(target=lambda: answered.append(request(
            server, "/api/call", {"X-Daqhub-Token": "tok"},
            {"instrument": "oven", "method": "ramp", "args": []})))
        command.start()
        assert source.started.wait(10), "the command never reached the source"

        def hold() -> socket.socket:
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            wait_until(lambda: server.gate is not None and server.gate.open == 3,
                       "every place taken")
            return held[-1]

        def newcomer() -> None:
            status, state, _ = request(server, "/api/state", {"X-Daqhub-Token": "tok"})
            assert status == 200 and state["instruments"][0]["id"] == "oven"

        first = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        held.append(first)
        second = hold()
        newcomer()
        assert first.recv(4096) == b""  # the one waiting longest made room
        third = hold()
        newcomer()
        assert second.recv(4096) == b""
        third.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"X-Daqhub-Token: tok\r\n\r\n")
        assert third.recv(4096).startswith(b"HTTP/1.1 200")  # the younger one kept its place
        source.release.set()
        command.join(10)
        assert answered and answered[0][0] == 200 and answered[0][1]["result"] == 42
    finally:
        source.release.set()
        for s in held:
            s.close()
        assert server.stop(10)


@pytest.mark.timeout(60)
def test_failing_accepts_are_logged_once_not_once_each(tmp_path: Path) -> None:
    # the server process may open only a few more files; each connection would be one
    script = tmp_path / "serve.py"
    script.write_text("""
import logging, os, resource, sys
from daqhub.web.server import DashboardServer
from daqhub.web.settings import WebSettings
class Empty:
    def title(self): return "empty"
    def instruments(self): return []
    def take(self): return []
    def health(self): return {"instruments": [], "alarms": [], "routines": []}
    def files(self): return []
    def close(self): pass
logging.basicConfig(level=logging.WARNING)
server = DashboardServer(Empty(), WebSettings(port=0), max_connections=1000)
server.start()
used = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 8, resource.getrlimit(
    resource.RLIMIT_NOFILE)[1]))
print(server.port, flush=True)
sys.stdin.readline()  # the test holds its connections until the errors repeated
server.stop(10)
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=(tmp_path / "err.txt").open("wb"),
                            text=True)
    conns: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        for _ in range(30):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # asyncio pauses accepting for a second after each failure, then tries again
        wait_until(lambda: "Too many open files" in (tmp_path / "err.txt").read_text(),
                   "the first failing accept", timeout=20)
        for c in conns:
            c.close()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in conns:
            c.close()
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err, err
    assert sum("Too many open files" in line for line in err.splitlines()) == 1, err


class Commands(ScriptedSource):
    """Commands whose results JSON has no word for, and a driver's own bug."""

    def call(self, instrument: str, method: str, args: Any) -> Any:
        if method == "lookup_gain":
            return {"offset": 1.0}["gain"]  # a driver's bug: a KeyError of its own
        return {"dark": math.nan, "spectrum": [1.0, math.inf, -math.inf],
                "table": {(1, 2): "a tuple key"}}[method]


@pytest.mark.timeout(30)
def test_any_command_result_is_sent_as_json_and_a_driver_s_key_error_as_its_error() -> None:
    """A NaN result was sent as NaN, which the page could not read; a driver's own KeyError
    was answered "404: gain", as if there were no such instrument."""
    settings = WebSettings(port=0, token="tok-for-tests", commands=True)
    server = DashboardServer(Commands(), settings)
    server.start()
    good = {"X-Daqhub-Token": settings.token}
    try:
        def call(method: str, instrument: str = "oven") -> tuple[int, Any]:
            status, body, _ = request(server, "/api/call", good, {
                "instrument": instrument, "method": method, "args": []})
            return status, body  # read as the page reads it: NaN is not JSON

        assert call("dark") == (200, {"ok": True, "result": "NaN"})
        assert call("spectrum") == (200, {"ok": True, "result": [1.0, "Infinity", "-Infinity"]})
        assert call("table") == (200, {"ok": True, "result": "{(1, 2): 'a tuple key'}"})
        assert call("lookup_gain") == (502, {"ok": False, "error": "KeyError: 'gain'"})
        status, text = call("dark", instrument="kiln")
        assert status == 404 and text == "no instrument 'kiln' in this run"
    finally:
        assert server.stop(10)


@pytest.mark.timeout(60)
def test_a_command_is_waited_for_as_long_as_its_own_timeout_allows(tmp_path: Path) -> None:
    """The page gave every command 30 s, whatever its own timeout: a 33 s move with
    ``timeout=60`` failed on the page and went on in the run. It waits as the Lab API does
    (command_limits): the command's own timeout plus a margin."""
    from daqhub.command_limits import TIMEOUT_MARGIN_S

    settings = WebSettings(port=0, token="tok-for-tests", commands=True)
    HELD.clear()
    with dashboard(tmp_path, settings) as (_, server):
        try:
            started = time.monotonic()
            status, body, _ = request(server, "/api/call", {"X-Daqhub-Token": settings.token},
                                      {"instrument": "scope0", "method": "hold", "args": [0.5]},
                                      timeout=30)
            waited = time.monotonic() - started
        finally:
            HELD.set()  # the command ends, and with it the instrument's wait
    limit = 0.5 + TIMEOUT_MARGIN_S
    assert status == 502 and body["ok"] is False, body
    assert f"no result within {limit:g} s" in body["error"]
    assert limit <= waited < limit + 5


@pytest.mark.timeout(30)
def test_a_token_that_is_not_utf_8_is_a_wrong_token() -> None:
    """A token header with a byte that is not UTF-8 was a 500 and a traceback per request."""
    settings = WebSettings(host="127.0.0.2", port=0, token="tok-for-tests", commands=True)
    server = DashboardServer(ScriptedSource(), settings)
    server.start()
    odd = {"X-Daqhub-Token": "t\u00f6ken"}  # sent as the byte 0xf6 (latin-1)
    try:
        assert request(server, "/api/state", odd)[:2] == (403, "wrong token")
        assert request(server, "/api/call", odd, {"instrument": "oven", "method": "add",
                                                  "args": []})[:2] == (403, "wrong token")
        assert request(server, "/api/state", {"X-Daqhub-Token": settings.token})[0] == 200
    finally:
        assert server.stop(10)
    assert not server.problems.counts


@pytest.mark.timeout(30)
def test_the_end_of_the_run_reaches_a_watching_page_before_the_dashboard_stops() -> None:
    """The dashboard stopped as the runtime's shutdown returned: a page kept the states of
    its last poll, during the shutdown, and never heard that the run had ended."""
    from daqhub.web.settings import LAST_WORD_S

    source = ScriptedSource()
    server = DashboardServer(source, WebSettings(port=0, rate_hz=4))
    server.start()
    seen: list[dict[str, Any]] = []
    polled = threading.Event()

    def page() -> None:  # polls as the page does, until the dashboard is gone
        try:
            while True:
                since = seen[-1]["tick"] if seen else 0
                seen.append(request(server, f"/api/state?since={since}")[1])
                polled.set()
                time.sleep(0.05)  # the pace of a page's polls (20 Hz), not a wait for anything
        except (OSError, http.client.HTTPException):  # gone, mid-answer or before
            return

    poller = threading.Thread(target=page)
    poller.start()
    try:
        assert polled.wait(10), "the page got no state"
        source.state, source.ended = "stopped", True  # the runtime has shut down
        started = time.monotonic()
        assert server.stop(10, last_word=True)
        assert time.monotonic() - started < LAST_WORD_S + 1  # a second at most, and a margin
    finally:
        server.stop(10)
        poller.join(10)
    last = seen[-1]
    assert last["ended"] is True and last["instruments"][0]["state"] == "stopped"
    # with no page watching, the dashboard stops at once
    server = DashboardServer(ScriptedSource(), WebSettings(port=0, rate_hz=0.2))
    server.start()
    started = time.monotonic()
    assert server.stop(10, last_word=True)
    assert time.monotonic() - started < LAST_WORD_S


class Unanswered(ScriptedSource):
    """A source whose commands do not end until the test says so (a remote run's call that
    never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.called, self.answer = threading.Event(), threading.Event()

    def call(self, instrument: str, method: str, args: Any) -> Any:
        self.called.set()
        self.answer.wait(30)
        return None


@pytest.mark.timeout(60)
def test_a_dashboard_that_does_not_stop_in_the_shutdown_s_budget_is_said_and_timed() -> None:
    """``daqhub run`` stopped its dashboard within 5 s of its own after the shutdown, said
    nothing when it did not stop, and left that time out of the report's "took"."""
    from daqhub.runtime.dual import ShutdownReport
    from daqhub.web.runweb import STOP_LEAST_S, RunDashboard
    from daqhub.web.server import bind

    def dashboard_of(source: ScriptedSource) -> RunDashboard:
        settings = WebSettings(port=0, token="tok-for-tests", commands=True)
        dash = RunDashboard(settings, bind(settings))
        dash.source = source
        dash.server = DashboardServer(source, settings, dash.sock)
        dash.server.start()
        return dash

    source = Unanswered()
    dash = dashboard_of(source)

    def page_call() -> None:
        try:
            request(dash.server, "/api/call", {"X-Daqhub-Token": "tok-for-tests"},
                    {"instrument": "oven", "method": "ramp", "args": []}, timeout=30)
        except (OSError, http.client.HTTPException):  # the dashboard went away meanwhile
            pass

    caller = threading.Thread(target=page_call)
    caller.start()
    try:
        assert source.called.wait(10), "the command never reached the source"
        report = ShutdownReport(duration_s=14.0)  # the runtime's shutdown took most of 15 s
        problem = dash.stop_after(report, 15.0)
    finally:
        source.answer.set()
        caller.join(30)
    assert problem == (f"the dashboard did not stop within {STOP_LEAST_S:.1f} s (the rest of "
                       "shutdown_timeout = 15 s, at least its last word): a request it was "
                       "answering did not end")
    assert report.duration_s >= 14.0 + STOP_LEAST_S  # its wait is in the "took"
    # nothing pending: it stops at once, and says nothing
    idle = dashboard_of(ScriptedSource())
    report = ShutdownReport(duration_s=1.0)
    assert idle.stop_after(report, 15.0) is None
    assert 1.0 <= report.duration_s < 1.0 + STOP_LEAST_S


def test_an_update_that_keeps_failing_is_logged_once_not_at_every_tick(
        caplog: pytest.LogCaptureFixture) -> None:
    """A view whose link was lost failed every tick (4 a second) with a full traceback each
    time in the log of whoever runs it; the page shows the problem all along."""
    from types import SimpleNamespace

    def update() -> None:
        raise ConnectionError("link lost")

    server = DashboardServer.__new__(DashboardServer)
    server.model = SimpleNamespace(update=update, problem="")  # type: ignore[assignment]
    with caplog.at_level("ERROR", logger="daqhub.web"):
        for _ in range(5):
            server._update()
    assert server.model.problem == \
        "the dashboard could not update: ConnectionError('link lost')"
    assert [r.message for r in caplog.records] == ["dashboard update failed"]
