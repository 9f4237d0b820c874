"""The dashboard against clients that send what they should not: a command's wrong
arguments, JSON nested thousands deep, malformed requests by the hundred, requests pipelined
and never read; and a command's result as the page is sent it."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from polling import wait_until
from web_fakes import ScriptedSource
from webtest import dashboard, request

from daqhub.web.server import DashboardServer, plotly_js
from daqhub.web.settings import WebSettings

TOKEN = "tok-for-hostile-tests"


def scope_errors(rt: Any) -> int:
    return next(int(i["errors"]) for i in rt.health()["instruments"] if i["id"] == "scope0")


@pytest.mark.timeout(60)
def test_a_command_s_arguments_are_checked_as_the_lab_api_checks_them(tmp_path: Path) -> None:
    """The page's commands were sent unchecked: ``set_output("off")`` turned a supply on,
    and a wrong argument came back as a driver's TypeError, counted as the instrument's
    error. Now refused as the Lab API refuses it, with its message, nothing sent."""
    settings = WebSettings(port=0, token=TOKEN, commands=True)
    good = {"X-Daqhub-Token": TOKEN}

    def add(*args: Any) -> tuple[int, Any]:
        status, body, _ = request(server, "/api/call", good,
                                  {"instrument": "scope0", "method": "add", "args": list(args)})
        return status, body

    with dashboard(tmp_path, settings) as (rt, server):
        assert add("1", 2) == (400, "scope0: add's a is an int, got '1' (daqhub plugins "
                                    "webtest.scope lists its commands and arguments)")
        assert add(1) == (400, "scope0: add takes 2 arguments (a, b), got 1 (fix the number "
                               "of arguments)")
        assert scope_errors(rt) == 0  # nothing reached the instrument
        assert add(1, 2) == (200, {"ok": True, "result": 3})


class Rows(ScriptedSource):
    """A command that returns what ``dmm.read`` returns: an Arrow batch."""

    def call(self, instrument: str, method: str, args: Any) -> Any:
        return [pa.record_batch({"value": [1.25, float("nan")], "unit": ["V", "V"]})]


def read_through_the_page(source: ScriptedSource) -> tuple[int, Any]:
    """The status and body the page gets for ``oven.read()`` on a dashboard of ``source``."""
    server = DashboardServer(source, WebSettings(port=0, token=TOKEN, commands=True))
    server.start()
    try:
        status, body, _ = request(server, "/api/call", {"X-Daqhub-Token": TOKEN},
                                  {"instrument": "oven", "method": "read", "args": []})
    finally:
        assert server.stop(10)
    return status, body


@pytest.mark.timeout(30)
def test_a_command_s_result_is_sent_in_the_values_the_data_service_sends() -> None:
    """``dmm.read`` showed on the page as ``"pyarrow.RecordBatch\\nvalue: double ..."``,
    where ``daqhub view`` and ``conn.call`` gave its rows."""
    status, body = read_through_the_page(Rows())
    assert status == 200
    assert body == {"ok": True, "result": [[{"value": 1.25, "unit": "V"},
                                            {"value": "NaN", "unit": "V"}]]}


@pytest.mark.timeout(30)
def test_json_nested_too_deeply_is_a_bad_request() -> None:
    """A command's args nested 5000 deep were a 500 "Server got itself in trouble" and a
    traceback on the run's terminal."""
    server = DashboardServer(ScriptedSource(), WebSettings(port=0, token=TOKEN, commands=True))
    server.start()
    body = (b'{"instrument": "oven", "method": "add", "args": ' + b"[" * 5000 + b"]" * 5000
            + b"}")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST /api/call HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      b"Content-Type: application/json\r\nX-Daqhub-Token: " + TOKEN.encode()
                      + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            answer = b"".join(iter(lambda: s.recv(65536), b""))
    finally:
        assert server.stop(10)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert answer.endswith(b"not JSON: nested too deeply")


@pytest.mark.timeout(30)
def test_malformed_requests_are_counted_not_each_logged_with_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each malformed request (a header over 8 kB, a bad chunk size, a Content-Length that is
    not a number), from anyone, printed aiohttp's traceback on the run's terminal: 300 of
    them, 3,100 lines burying the run's status and alarms."""
    server = DashboardServer(ScriptedSource(), WebSettings(port=0))
    server.start()
    bad = [b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
           b"POST /api/call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
           b"POST /api/call HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"zz\r\n"]
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(10):
                for raw in bad:
                    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                        s.sendall(raw)
                        assert s.recv(4096).split(b"\r\n")[0].endswith(b" 400 Bad Request")
            assert request(server, "/api/state")[0] == 200  # and the page is served
    finally:
        assert server.stop(10)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    said = [r.getMessage() for r in caplog.records if "aiohttp" in r.getMessage()]
    assert len(said) <= 2 * len(bad), said  # once per kind, and once how many times
    assert sum(n for kind, n in server.problems.counts.items()
               if kind.startswith("aiohttp")) == 10 * len(bad)


def pipeline(port: int, request_bytes: bytes) -> socket.socket:
    """A connection that sends two requests at once and reads both answers, then sends a
    megabyte more of them and reads nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(request_bytes * 2)
    got = b""
    while got.count(b"(it ends in ?token=...)") < 2:  # the end of a 401's text
        got += s.recv(65536)
    s.setblocking(False)
    try:
        s.send(request_bytes * 20000)
    except BlockingIOError:  # as much as the socket takes: the rest is never sent either
        pass
    return s


@pytest.mark.timeout(30)
def test_clients_that_pipeline_requests_and_never_read_cannot_lock_the_page_out() -> None:
    """Connections pipelining a megabyte of requests each and never reading the answers (401s:
    no token is needed for that) held every place, always being answered: every page request
    got 503 for as long as they stayed open."""
    settings = WebSettings(host="127.0.0.1", port=0, token=TOKEN, commands=True)
    # yield_after_s: no held connection has waited long enough for a request to give way
    server = DashboardServer(ScriptedSource(), settings, max_connections=3, yield_after_s=60)
    server.start()
    refused = b"POST /api/call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            held.append(pipeline(server.port, refused))
        assert server.gate is not None and server.gate.open == 3
        for _ in range(3):  # the page's polls, each taking one of their places
            status, state, _ = request(server, "/api/state")
            assert status == 200 and state["instruments"][0]["id"] == "oven"
    finally:
        for s in held:
            s.close()
        assert server.stop(10)


@pytest.mark.timeout(30)
def test_a_connection_whose_client_reads_nothing_is_closed() -> None:
    """A client that asked for the 4.6 MB plotly bundle and never read held its connection,
    and the memory of the answer, for as long as it liked."""
    server = DashboardServer(ScriptedSource(), WebSettings(port=0), write_wait_s=0.2)
    server.start()
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", server.port))
        s.sendall(b"GET /vendor/plotly.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_until(lambda: server.gate is not None and server.gate.open == 1, "the connection")
        wait_until(lambda: server.gate is not None and server.gate.open == 0,
                   "the server to close the connection its client does not read")
        assert "connection closed: its client does not read" in server.problems.counts
        assert request(server, "/api/state")[0] == 200
    finally:
        s.close()
        assert server.stop(10)


@pytest.mark.timeout(120)
def test_daqhub_view_s_page_refuses_wrong_arguments_as_the_run_s_page_does(
        tmp_path: Path) -> None:
    """``daqhub view --commands``: the service's refusal (ArrowInvalid) went through
    FlightSource as the instrument's error, a 502, where the run's own page answered 400."""
    pytest.importorskip("daqhub.flight_client", reason="pyarrow without Flight")
    from web_fakes import web_host, web_lab

    from daqhub.flight_client import connect
    from daqhub.flight_service import start_service
    from daqhub.runtime.dual import DualRuntimeManager
    from daqhub.serve_config import ServeConfig
    from daqhub.web.source import RuntimeSource
    from daqhub.web.view import FlightSource

    host = web_host()
    rt = DualRuntimeManager(web_lab(host, tmp_path), host, storage=True)  # stored: in the manifest
    service = start_service(rt, ServeConfig(port=0, token=TOKEN, actions=True))
    rt.start()
    settings = WebSettings(port=0, token=TOKEN, commands=True)
    pages: list[DashboardServer] = []
    try:
        wait_until(lambda: "scope0" in rt.counts(), "the scope's first samples")
        pages.append(DashboardServer(RuntimeSource(rt), settings))
        pages.append(DashboardServer(FlightSource(connect(service.url, token=TOKEN),
                                                  service.url), settings))
        answers = []
        for page in pages:
            page.start()
            answers.append(request(page, "/api/call", {"X-Daqhub-Token": TOKEN},
                                   {"instrument": "scope0", "method": "add", "args": ["1", 2]}
                                   )[:2])
        run_page, view_page = answers
        assert run_page == (400, "scope0: add's a is an int, got '1' (daqhub plugins "
                                 "webtest.scope lists its commands and arguments)")
        assert view_page == run_page
        assert scope_errors(rt) == 0  # nothing reached the instrument
    finally:
        for page in pages:
            assert page.stop(10)
        assert rt.shutdown().ok
        service.stop()


class Broken(ScriptedSource):
    """A dashboard bug: the source's title raises."""

    def title(self) -> str:
        titles: dict[str, str] = {}
        return titles["bug"]


@pytest.mark.timeout(30)
def test_a_bug_in_a_request_handler_is_logged_once_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's log went through the count of malformed requests: a bug of the dashboard's
    own was one line, "KeyError('bug')", with no traceback to find it by."""
    server = DashboardServer(Broken(), WebSettings(port=0))
    server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="daqhub.web"):
            for _ in range(3):
                assert request(server, "/api/state")[0] == 500
    finally:
        assert server.stop(10)
    [logged] = [r for r in caplog.records if r.exc_info]
    assert isinstance(logged.exc_info[1], KeyError), logged.exc_info  # type: ignore[index]
    assert 'return titles["bug"]' in caplog.text  # the traceback, down to the faulty line
    [kind] = [k for k in server.problems.counts if "KeyError" in k]
    assert server.problems.counts[kind] == 3


class Keyed(ScriptedSource):
    """A command whose result is a dict with a non-finite float key."""

    def call(self, instrument: str, method: str, args: Any) -> Any:
        return {float("inf"): 1.0, 0.5: float("nan")}


@pytest.mark.timeout(30)
def test_a_result_json_cannot_hold_goes_as_its_repr() -> None:
    """A dict keyed by an infinity: ``json.dumps(allow_nan=False)`` raised out of the
    handler, a 500 for a command that had run."""
    status, body = read_through_the_page(Keyed())
    assert (status, body) == (200, {"ok": True, "result": "{inf: 1.0, 0.5: nan}"})


@pytest.mark.timeout(60)
def test_a_connection_whose_client_reads_slowly_is_not_closed() -> None:
    """A client reading plotly.js a few KiB at a time, pausing no longer than the limit, was
    closed: the limit ran until writing resumed, which took the client emptying the
    kernel's buffers (megabytes, on loopback) by a third first."""
    server = DashboardServer(ScriptedSource(), WebSettings(port=0), write_wait_s=1.0)
    server.start()
    s = socket.socket()
    got = b""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", server.port))
        s.settimeout(10)
        s.sendall(b"GET /vendor/plotly.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Connection: close\r\n\r\n")
        for _ in range(60):  # 4 KiB every 0.05 s: three times the limit, taking something
            got += s.recv(4096)  # in each tenth of it
            time.sleep(0.05)  # the client's pace, not a wait for the server
        got += b"".join(iter(lambda: s.recv(65536), b""))  # then the rest, at once
    finally:
        s.close()
        assert server.stop(10)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == plotly_js()
    assert "connection closed: its client does not read" not in server.problems.counts
