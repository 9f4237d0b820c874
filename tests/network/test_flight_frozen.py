"""Streams of the data service when a peer freezes: a lab host that stops answering without
closing the connection (a frozen PC, a network that drops packets), a client that stops
reading or was paused itself, a slow link; and what a client is told: where its live stream
starts, a request's refusal.

A frozen host is a Flight server here whose streams send a few messages and then nothing,
with the connection open (as ``kill -STOP`` of ``daqhub run`` left it).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flight_lab import lab_text, served_run
from polling import wait_until
from tcp_proxy import TcpProxy

import daqhub
from daqhub.flight_client import LinkLostError
from daqhub.measurement import ChannelSpec
from daqhub.record_transfer import RECORDS_SCHEMA
from daqhub.schema import build_batch, channel_schema
from daqhub.serve_config import ServeConfig

pytestmark = pytest.mark.timeout(60)
TOKEN = "frozen-token"
SID = "20260101T000000Z-0000beef"
SPEC = ChannelSpec("voltage", "scalar", "V", "float64")
SCHEMA = channel_schema("dmm", SPEC, unified=True)
Message = tuple[pa.RecordBatch, dict[str, Any]]


def rows(first: int, n: int) -> pa.RecordBatch:
    return build_batch("dmm", SPEC, np.arange(first, first + n), np.arange(n, dtype=float),
                       source="v4")


def record_chunk(name: str, data: bytes, size: int, offset: int) -> pa.RecordBatch:
    return pa.record_batch([[name], [size], [offset], [data]], schema=RECORDS_SCHEMA)


class FakeHost(flight.FlightServerBase):  # type: ignore[misc]
    """A data service offering ``dmm/voltage`` live and in session :data:`SID` (v4), whose
    streams send ``messages[kind]`` (kind: live, session, records), one every ``pace_s``, and
    then freeze (``freeze``; else end). ``silent_open``: the host answers nothing at all."""

    def __init__(self, messages: dict[str, list[Message]], *, freeze: bool = True,
                 silent_open: bool = False, pace_s: float = 0.0) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.messages, self.freeze, self.silent_open = messages, freeze, silent_open
        self.pace_s = pace_s
        self.thawed = threading.Event()  # set when the test ends: the server can then stop
        self.url = f"grpc://127.0.0.1:{self.port}"

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        if criteria.startswith(b"live"):
            path, ticket = ["live", "dmm", "voltage"], {"live": "dmm/voltage"}
        else:
            path = ["session", SID, "v4", "dmm", "voltage"]
            ticket = {"session": SID, "flavor": "v4", "channel": "dmm/voltage"}
        endpoint = flight.FlightEndpoint(json.dumps(ticket).encode(), [])
        yield flight.FlightInfo(SCHEMA, flight.FlightDescriptor.for_path(*path), [endpoint],
                                -1, -1)

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        if self.silent_open:
            self.thawed.wait()
        kind = next(k for k in ("live", "session", "records") if k in json.loads(ticket.ticket))
        schema = RECORDS_SCHEMA if kind == "records" else SCHEMA
        return flight.GeneratorStream(schema, self._send(self.messages.get(kind, [])))

    def _send(self, messages: list[Message]) -> Iterator[Any]:
        pace = threading.Event()  # never set: the pace of a slow link
        for batch, meta in messages:
            pace.wait(self.pace_s)
            yield batch, pa.py_buffer(json.dumps(meta).encode())
        if self.freeze:
            self.thawed.wait()


@pytest.fixture
def fake_host() -> Iterator[Callable[..., FakeHost]]:
    hosts: list[FakeHost] = []

    def start(messages: dict[str, list[Message]], **kwargs: Any) -> FakeHost:
        hosts.append(FakeHost(messages, **kwargs))
        return hosts[-1]

    yield start
    for host in hosts:
        host.thawed.set()
        host.shutdown()


def raised_within(seconds: float, read: Callable[[], object]) -> BaseException | None:
    """What ``read()`` raised (None: nothing), failing the test if it is still blocked after
    ``seconds`` (it then blocks a helper thread, not the test)."""
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def run() -> None:
        try:
            read()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), f"still blocked after {seconds} s"
    return outcome[0]


def test_every_read_from_a_host_that_stops_answering_ends_with_the_link_lost(
        fake_host: Callable[..., FakeHost]) -> None:
    """Without a message for ``silence_limit`` s, a read ends with LinkLostError naming the
    service and the wait; a subscriber waited for ever, and so did a stored read."""
    host = fake_host({"live": [(rows(0, 2), {"since_row": 0, "first_row": 0})],
                      "session": [(rows(0, 3), {})],
                      "records": [(record_chunk("records.h5", b"abc", 3, 0), {})]})
    conn = daqhub.connect(host.url, timeout=5, silence_limit=1)
    live = conn.subscribe("*")
    assert live.get(timeout=5) is not None  # the host answered, then froze
    lost = raised_within(10, lambda: list(live))
    assert isinstance(lost, LinkLostError)
    assert str(lost) == (f"the live stream of dmm/voltage: nothing came from {host.url} for "
                         "1 s (the host or the network stopped answering)")
    live.close()

    stored = conn.sessions()[SID]["v4"][0]
    batches = conn.read_channel(stored)
    assert next(batches).num_rows == 3
    lost = raised_within(10, lambda: list(batches))
    assert isinstance(lost, LinkLostError)
    assert f"the stored channel dmm/voltage: nothing came from {host.url} for 1 s" in str(lost)

    files = conn.record_files(SID, "v4")
    assert next(files) == ("records.h5", b"abc")
    lost = raised_within(10, lambda: list(files))
    assert isinstance(lost, LinkLostError)
    assert f"the record files of {SID} (v4): nothing came from {host.url}" in str(lost)
    conn.close()


def test_record_files_must_open_within_the_timeout_and_may_then_take_longer(
        fake_host: Callable[..., FakeHost]) -> None:
    """Without ``follow`` the whole transfer had the connection's timeout as its deadline (a
    large file on a slow link failed midway), and a host that did not answer gave gRPC's
    "Deadline Exceeded" without naming what or where."""
    silent = fake_host({}, silent_open=True)
    with daqhub.connect(silent.url, timeout=0.5) as conn:
        with pytest.raises(TimeoutError) as info:
            list(conn.record_files(SID, "v4"))
    assert str(info.value) == (f"opening the record files of {SID} (v4): no answer from "
                               f"{silent.url} within 0.5 s")
    data = bytes(range(200))
    slow = fake_host({"records": [(record_chunk("points-1.arrow", data[i:i + 50], 200, i), {})
                                  for i in range(0, 200, 50)]}, freeze=False, pace_s=0.3)
    with daqhub.connect(slow.url, timeout=0.5, silence_limit=5) as conn:
        started = time.monotonic()
        assert list(conn.record_files(SID, "v4")) == [("points-1.arrow", data)]
        assert time.monotonic() - started > 0.5  # it did outlast the connection's timeout


def test_rows_dropped_before_a_subscriber_s_first_batch_are_counted_and_heartbeats_skipped(
        fake_host: Callable[..., FakeHost]) -> None:
    host = fake_host({"live": [
        (rows(130, 2), {"since_row": 100, "first_row": 130, "dropped_batches": 3}),
        (rows(132, 0), {"first_row": 132, "dropped_batches": 3, "heartbeat": True}),
        (rows(132, 1), {"first_row": 132, "dropped_batches": 3})]}, freeze=False)
    with daqhub.connect(host.url) as conn, conn.subscribe("*") as live:
        got = list(live)  # ends: the stream ended (the run stopped)
    assert [(b.first_row, b.batch.num_rows, b.lost_before) for b in got] == [(130, 2, 30),
                                                                            (132, 1, 0)]
    assert live.lost == {"dmm/voltage": 30}


@pytest.fixture
def quiet_lab(tmp_path: Path, visa_sim_backend: Callable[..., str],
              sim_url: Callable[..., str]) -> str:
    """The DMM at 200 Hz; the stage polled once in 10 s: a quiet channel."""
    return lab_text(tmp_path / "data", visa_sim_backend(), sim_url("esp300", speed_scale=20),
                    poll_hz=200, stage_hz=0.1)


def test_a_quiet_live_channel_carries_heartbeats_and_is_not_taken_for_a_lost_link(
        quiet_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    with served_run(quiet_lab, daqhub_host, tmp_path) as (rt, service):
        service.heartbeat_s = 0.2
        raw = flight.connect(service.url)
        reader = raw.do_get(flight.Ticket(b'{"live": "stage/position", "heartbeat": true}'),
                            flight.FlightCallOptions(timeout=10))
        beats, next_row = 0, None
        while beats < 3:  # what any Arrow client sees: zero-row batches, marked
            chunk = reader.read_chunk()
            meta = json.loads(chunk.app_metadata.to_pybytes())
            next_row = meta["since_row"] if next_row is None else next_row
            if chunk.data.num_rows:
                next_row = meta["first_row"] + chunk.data.num_rows
            else:  # the row the stream sends next: a client counts no loss from it
                assert meta["heartbeat"] is True and meta["first_row"] == next_row
                beats += 1
        reader.cancel()
        with daqhub.connect(service.url, silence_limit=1) as conn, \
                conn.subscribe("stage/*") as live:
            until = time.monotonic() + 2.5  # longer than the limit; no stage row due
            while time.monotonic() < until:
                item = live.get(timeout=0.1)  # LinkLostError without the heartbeats
                assert item is None or item.batch.num_rows > 0  # they are not handed on


def test_a_live_stream_says_the_row_its_subscriber_starts_at(
        quiet_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    """Rows the service drops before a subscriber's first batch are told: the first message
    carries ``since_row``, the channel's row count when the subscription began."""
    with served_run(quiet_lab, daqhub_host, tmp_path) as (rt, service):
        wait_until(lambda: service.counter.rows.get(("dmm", "voltage"), 0) > 20, "DMM rows")
        raw = flight.connect(service.url)
        before = service.counter.rows[("dmm", "voltage")]
        reader = raw.do_get(flight.Ticket(b'{"live": "dmm/voltage", "queue": 1}'),
                            flight.FlightCallOptions(timeout=10))
        after = service.counter.rows[("dmm", "voltage")]
        first = reader.read_chunk()
        reader.cancel()
        meta = json.loads(first.app_metadata.to_pybytes())
        assert before <= meta["since_row"] <= after
        # rows between the start and the first batch: dropped (its one-batch queue), and said
        assert (meta["first_row"] > meta["since_row"]) == (meta["dropped_batches"] > 0)


def test_a_refused_request_says_what_the_service_said_without_its_traceback(
        quiet_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    """The client was shown the service's Python traceback, with its source paths, and
    gRPC's debug context; the exception types stay what callers catch."""
    config = ServeConfig(port=0, token=TOKEN, actions=True)
    with served_run(quiet_lab, daqhub_host, tmp_path, config) as (rt, service), \
            daqhub.connect(service.url, token=TOKEN) as conn:
        wait_until(lambda: rt.counts().get("dmm", {}).get("voltage", 0) > 0, "DMM rows")
        with pytest.raises(pa.ArrowInvalid) as call:
            conn.call("stgae", "position")
        assert str(call.value).startswith("no running instrument 'stgae'")
        stored = conn.sessions()[rt.session_id]["v4"][0]
        with pytest.raises(pa.ArrowInvalid) as read:
            list(conn.read_channel(stored, start=-1))
        assert str(read.value) == "start -1: a row index, 0 or more"
        with pytest.raises(flight.FlightServerError) as missing:
            list(conn.record_files("20990101T000000Z-00000000", "v4"))
        assert str(missing.value).endswith("no session 20990101T000000Z-00000000 here")
        for refused in (call.value, read.value, missing.value):
            assert "Traceback" not in str(refused) and ".py" not in str(refused)
            assert "gRPC" not in str(refused)


def test_a_stored_read_over_a_slow_link_is_not_taken_for_a_lost_link(
        quiet_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    """A stored channel went in the file's own batches (an HDF5 read of 65 536 spectra is
    ~105 MB), and the watchdog, which sees only whole messages, called a slow link lost while
    the bytes were still coming. The service slices them to ``message_bytes`` (4 MiB; lowered
    here so that 1 MB over a 400 kB/s link shows it)."""
    with served_run(quiet_lab, daqhub_host, tmp_path) as (rt, service):
        service.message_bytes = 64 * 1024
        path = Path(rt.lab.flavors["v4"].output_dir) / SID / "dmm" / "voltage.arrows"
        path.parent.mkdir(parents=True)
        big = rows(0, 40_000)  # ~1 MB, one batch in the file
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, big.schema) as file:
            file.write_batch(big)
        proxy = TcpProxy(("127.0.0.1", service.port), rate=400_000)  # it all: ~2.6 s
        try:
            with daqhub.connect(f"grpc://127.0.0.1:{proxy.port}", silence_limit=1) as conn:
                table = conn.read_session(SID)["v4/dmm/voltage"]
        finally:
            proxy.close()
    assert table.column("timestamp_ns").to_pylist() == list(range(40_000))


PAUSED_CLIENT = """
import sys, daqhub
with daqhub.connect(sys.argv[1], silence_limit=1) as conn, conn.subscribe("*") as live:
    try:
        for item in live:
            print("row", item.first_row, flush=True)
    except Exception as exc:
        print(type(exc).__name__, exc, flush=True)
"""


def test_a_client_paused_longer_than_the_limit_reads_on_once_resumed(
        fake_host: Callable[..., FakeHost]) -> None:
    """A script stopped with Ctrl-Z (or in a debugger) for longer than its silence_limit:
    the messages that came meanwhile waited in its socket, yet its watchdog, waking first,
    called the link lost."""
    host = fake_host({"live": [(rows(i, 1), {"since_row": 0, "first_row": i} if i == 0
                                else {"first_row": i}) for i in range(1200)]},
                     freeze=False, pace_s=0.05)
    client = subprocess.Popen([sys.executable, "-c", PAUSED_CLIENT, host.url],
                              stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def collect() -> None:
        assert client.stdout is not None
        for line in client.stdout:
            lines.put(line.strip())
        lines.put(None)  # it exited

    threading.Thread(target=collect, daemon=True).start()
    try:
        assert str(lines.get(timeout=30)).startswith("row")  # it reads
        os.kill(client.pid, signal.SIGSTOP)
        time.sleep(2.5)  # the pause itself: longer than the limit, and than LATE_WAKE_S late
        os.kill(client.pid, signal.SIGCONT)
        after: list[str] = []  # what came meanwhile, and on
        while len(after) < 20 and (line := lines.get(timeout=10)) is not None:
            after.append(line)
    finally:
        client.kill()
        client.wait()
    assert len(after) == 20 and all(line.startswith("row") for line in after), after
