"""The live data service (Arrow Flight) of a running lab, through daqhub.connect.

Real gRPC on loopback: what a remote analysis machine sees of a run, and what it cannot do.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flight_lab import lab_text, served_run
from polling import wait_until
from tcp_proxy import TcpProxy
from tls_pair import make_pair

import daqhub
from daqhub.cli import main as cli_main
from daqhub.flight_client import LinkLostError, clear_message
from daqhub.serve_config import ServeConfig, ServeConfigError

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-token"


@pytest.fixture
def lab(tmp_path: Path, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> str:
    return lab_text(tmp_path / "data", visa_sim_backend(), sim_url("esp300", speed_scale=20))


@pytest.fixture
def served(lab: str, daqhub_host: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    runs: list[Any] = []

    def start(config: ServeConfig | None = None) -> tuple[Any, Any]:
        cm = served_run(lab, daqhub_host, tmp_path, config)
        runs.append(cm)
        return cm.__enter__()  # type: ignore[no-any-return]

    yield start
    for cm in runs:
        cm.__exit__(None, None, None)


def wait_rows(rt: Any, iid: str, n: int, timeout: float = 30) -> None:
    wait_until(lambda: sum(rt.counts().get(iid, {}).values()) >= n, f"{n} rows from {iid}",
               timeout=timeout)


def test_channels_carry_their_declarations_and_sessions_are_listed(served: Any) -> None:
    rt, service = served()
    with daqhub.connect(service.url) as conn:
        chans = {c.key: c for c in conn.channels()}
        assert set(chans) == {"stage/position", "dmm/voltage"}
        assert chans["stage/position"].spec.unit == "mm"
        assert chans["dmm/voltage"].spec.unit == "V"
        assert chans["dmm/voltage"].schema.names[-1] == "source"
        wait_rows(rt, "stage", 3)
        sessions = conn.sessions()
        assert set(sessions) == {rt.session_id}
        assert {f: sorted(c.key for c in cs) for f, cs in sessions[rt.session_id].items()} == {
            "v2": ["stage/position"], "v4": ["dmm/voltage"]}
        manifest = conn.manifest()
        assert manifest["session_id"] == rt.session_id and manifest["running"]
        assert manifest["flavors"]["v2"]["backend"] == "hdf5"
        assert manifest["lab_config"] == rt.lab.text


def test_a_live_subscription_gets_every_row_of_its_channels_in_order_until_the_run_stops(
        served: Any) -> None:
    rt, service = served()
    conn = daqhub.connect(service.url)
    live = conn.subscribe("stage/*")
    got: list[Any] = []
    first = live.get(timeout=10)
    assert first is not None
    got.append(first)
    wait_rows(rt, "stage", first.first_row + 30)
    rt.shutdown()
    service.stop()
    got.extend(live)  # ends by itself: the run stopped
    assert {b.key for b in got} == {"stage/position"}
    rows = [b.first_row for b in got]
    assert rows == sorted(rows)
    assert all(b.lost_before == 0 for b in got) and live.lost == {"stage/position": 0}
    total = sum(b.batch.num_rows for b in got)
    assert got[0].first_row + total == rt.counts()["stage"]["position"]
    values = pa.concat_arrays([b.batch.column("value") for b in got])
    assert values.type == pa.float64() and got[0].spec.unit == "mm"
    live.close()


def test_a_slow_subscriber_loses_only_its_own_data_and_is_told_how_much(
        daqhub_host: Any, tmp_path: Path, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    # the DMM polls at 1 kHz: a subscriber that stops reading is really behind within a
    # second, once gRPC's buffers between it and the server are full (at 20 Hz, 40 rows fit
    # in them, and only batches arriving together at its one-batch server queue were lost)
    fast_lab = lab_text(tmp_path / "data", visa_sim_backend(),
                        sim_url("esp300", speed_scale=20), poll_hz=1000, stage_hz=20)
    with served_run(fast_lab, daqhub_host, tmp_path) as (rt, service):
        conn = daqhub.connect(service.url)
        slow = conn.subscribe("dmm/*", queue_batches=1)  # one batch here, one on the server
        fast = conn.subscribe("dmm/*")
        fast_batches = [fast.get(timeout=10)]
        start = fast_batches[0].first_row
        wait_rows(rt, "dmm", start + 1500)
        rt.shutdown()
        service.stop()
        fast_batches.extend(fast)
        slow_batches = list(slow)
        fast_rows = sum(b.batch.num_rows for b in fast_batches)
        assert fast.lost == {"dmm/voltage": 0}
        assert start + fast_rows == rt.counts()["dmm"]["voltage"]  # the fast one got everything
        lost = slow.lost["dmm/voltage"]
        assert lost > 0 and lost == sum(b.lost_before for b in slow_batches)
        # where it started: rows dropped before its first batch are lost too
        slow_first = slow_batches[0].first_row - slow_batches[0].lost_before
        assert slow_first + sum(b.batch.num_rows for b in slow_batches) + lost == \
            rt.counts()["dmm"]["voltage"]
        assert slow_batches[-1].dropped_batches > 0
        # storage (lossless) was not slowed into losing anything either
        with h5py.File(rt.output_dirs()["v2"] / "session.h5") as f:
            assert len(f["stage/position/value"]) == rt.counts()["stage"]["position"]


def test_a_running_and_a_finished_session_read_from_the_files(served: Any) -> None:
    rt, service = served()
    wait_rows(rt, "stage", 10)
    with daqhub.connect(service.url) as conn:
        running = conn.read_session()
        assert running["v2/stage/position"].num_rows >= 10  # flushed for the reader
    rt.shutdown()
    h5 = rt.output_dirs()["v2"] / "session.h5"
    with daqhub.connect(service.url) as conn:
        finished = conn.read_session(rt.session_id)
        try:
            import pandas  # noqa: F401
        except ImportError:
            with pytest.raises(ImportError, match="pip install pandas"):
                conn.read_session(rt.session_id, pandas=True)
        else:
            frames = conn.read_session(rt.session_id, pandas=True)
            assert len(frames["v2/stage/position"]) == finished["v2/stage/position"].num_rows
    table = finished["v2/stage/position"]
    with h5py.File(h5) as f:
        assert np.array_equal(table["value"].to_numpy(), f["stage/position/value"][:])
        assert np.array_equal(table["timestamp_ns"].to_numpy(),
                              f["stage/position/timestamp_ns"][:])
        g = f["stage/position"]  # texts back to back, each ending at its metadata_end
        text, ends = g["metadata"][:].tobytes().decode(), g["metadata_end"][:]
        stored_meta = [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    assert [m for m in table["metadata"].to_pylist() if m is not None] == stored_meta
    assert finished["v4/dmm/voltage"].num_rows == rt.counts()["dmm"]["voltage"]


def test_bad_requests_are_refused_clearly_and_the_run_goes_on(served: Any) -> None:
    rt, service = served(ServeConfig(port=0, token=TOKEN))
    client = flight.connect(service.url)
    good = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    bad = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer nope")])
    live = json.dumps({"live": "stage/position"}).encode()
    with pytest.raises(flight.FlightUnauthenticatedError, match="needs a bearer token"):
        list(client.list_flights())
    with pytest.raises(flight.FlightUnauthenticatedError, match="wrong token"):
        client.do_get(flight.Ticket(live), bad).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        daqhub.connect(service.url, token="nope").channels()
    for ticket, message in [
            (b"{not json", "not JSON"),
            (b"[1, 2]", "must be a JSON object"),
            (b'{"live": "stage"}', "INSTRUMENT/CHANNEL"),
            (b'{"live": "x/y", "session": "s"}', "exactly one of"),
            (b'{"session": "../../etc", "flavor": "v2", "channel": "a/b"}',
             "not a session id"),
            (b'{"live": "stage/position", "queue": 0}', "queue 0"),
            (b"x" * 65536, "65536 bytes; at most 4096")]:
        with pytest.raises(pa.ArrowInvalid) as info:
            client.do_get(flight.Ticket(ticket), good).read_all()
        assert message in clear_message(info.value)
    with pytest.raises(flight.FlightServerError, match="no live channel nope/x"):
        client.do_get(flight.Ticket(b'{"live": "nope/x"}'), good).read_all()
    with pytest.raises(flight.FlightUnauthorizedError, match="remote commands are off"):
        list(client.do_action(flight.Action("call", b"{}"), good))
    before = rt.counts().get("stage", {}).get("position", 0)
    wait_rows(rt, "stage", before + 5)  # still measuring
    assert all(i["state"] == "running" for i in rt.health()["instruments"])
    with daqhub.connect(service.url, token=TOKEN) as conn:
        assert len(conn.channels()) == 2  # and still serving the ones who may


def test_remote_commands_need_the_switch_and_a_token(served: Any) -> None:
    with pytest.raises(ServeConfigError, match="need a token"):
        ServeConfig.from_table({"actions": True}, environ={})
    rt, service = served(ServeConfig(port=0, token=TOKEN, actions=True))
    with daqhub.connect(service.url, token=TOKEN) as conn:
        assert conn.call("stage", "move_absolute", 1.5) is None
        assert conn.call("stage", "wait_until_done", 5) == 1.5
        assert {i["id"] for i in conn.health()["instruments"]} == {"stage", "dmm"}
        with pytest.raises(flight.FlightServerError, match="no command 'explode'"):
            conn.call("stage", "explode")
        with pytest.raises(pa.ArrowInvalid, match="no running instrument"):
            conn.call("ghost", "position")


def test_serving_beyond_loopback_needs_a_token(tmp_path: Path, lab: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ServeConfigError, match="needs a token: set DAQHUB_TOKEN"):
        ServeConfig.from_table({}, address="0.0.0.0:0", environ={})
    assert ServeConfig.from_table({}, address="0.0.0.0:0", environ={"DAQHUB_TOKEN": "t"}).token
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(lab)
    code = cli_main(["run", str(lab_file), "--serve", "0.0.0.0:0", "--duration", "1"])
    assert code == 2
    assert "needs a token" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_tls_when_a_certificate_is_configured(served: Any, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,"
                    "IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    rt, service = served(ServeConfig(port=0, tls_cert=cert, tls_key=key))
    assert service.url.startswith("grpc+tls://")
    with daqhub.connect(service.url, tls_root_certs=cert) as conn:
        assert len(conn.channels()) == 2
    with pytest.raises(flight.FlightUnavailableError), daqhub.connect(
            service.url.replace("grpc+tls", "grpc"), timeout=3) as plain:
        plain.channels()


def test_tls_files_may_be_given_from_the_home_directory(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``tls_cert = "~/certs/run.pem"`` was looked for in a directory named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    make_pair(tmp_path / "home" / "certs", "run")  # a real pair: the check loads it
    cfg = ServeConfig.from_table({"tls_cert": "~/certs/run.pem", "tls_key": "~/certs/run.key"},
                                 base_dir=tmp_path / "lab", environ={})
    assert cfg.tls_cert == tmp_path / "home" / "certs" / "run.pem"
    assert cfg.tls_key == tmp_path / "home" / "certs" / "run.key"
    assert cfg.scheme == "grpc+tls"


def test_a_broken_link_is_reported_not_taken_for_the_end(served: Any) -> None:
    rt, service = served()
    proxy = TcpProxy(("127.0.0.1", service.port))
    try:
        live = daqhub.connect(f"grpc://127.0.0.1:{proxy.port}").subscribe("stage/*")
        assert live.get(timeout=10) is not None
        proxy.cut()  # the network between the two machines breaks; the run goes on
        with pytest.raises(LinkLostError, match="stage/position"):
            for _ in live:
                pass
        live.close()
    finally:
        proxy.close()
    assert all(i["state"] == "running" for i in rt.health()["instruments"])


def test_tail_prints_live_values_until_the_run_stops(served: Any, tmp_path: Path) -> None:
    rt, service = served()
    tail = subprocess.Popen([sys.executable, "-m", "daqhub", "tail", service.url, "stage/*"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tail.stdout is not None
        lines = [tail.stdout.readline() for _ in range(5)]  # blocks until values arrive
        rt.shutdown()
        service.stop()
        rest, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    for line in lines:
        assert re.match(r"^\d\d:\d\d:\d\d\.\d{3}  stage/position  -?\d.* mm", line), line
    assert "dmm/" not in rest
    assert tail.returncode == 0 and "the run has stopped" in err


def test_tail_of_an_unknown_channel_says_what_there_is(served: Any) -> None:
    rt, service = served()
    done = subprocess.run([sys.executable, "-m", "daqhub", "tail", service.url, "nope/*"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no live channel matches 'nope/*'" in done.stderr and "stage/position" in done.stderr


def test_a_backlog_is_sent_in_fewer_larger_messages_without_joining_across_a_loss() -> None:
    from daqhub.flight_service import coalesce
    from daqhub.measurement import ChannelSpec
    from daqhub.schema import build_batch

    spec = ChannelSpec("v", "scalar", "V", "float64")

    def batch(first: int, n: int) -> pa.RecordBatch:
        return build_batch("i", spec, np.arange(first, first + n), np.arange(n, dtype=float),
                           source="v4")

    items = [(batch(0, 3), 0), (batch(3, 2), 3), (batch(9, 4), 9), (batch(13, 1), 13)]
    out = coalesce(items)
    assert [(b.num_rows, first) for b, first in out] == [(5, 0), (5, 9)]
    assert out[1][0].column("timestamp_ns").to_pylist() == [9, 10, 11, 12, 13]
    assert out[0][0].schema.equals(items[0][0].schema, check_metadata=True)


def test_a_misspelled_serve_key_is_a_lab_file_problem(lab: str, daqhub_host: Any,
                                                      tmp_path: Path) -> None:
    from daqhub.config import ConfigError, parse

    with pytest.raises(ConfigError) as info:
        parse(lab + '[daqhub.serve]\nadress = "127.0.0.1:0"\n', "lab.toml", daqhub_host,
              tmp_path)
    assert any("adress" in str(p) for p in info.value.problems)
    ok = parse(lab + '[daqhub.serve]\naddress = "127.0.0.1:0"\n', "lab.toml", daqhub_host,
               tmp_path)
    assert ok.serve == {"address": "127.0.0.1:0"}


def test_live_streams_are_limited_and_each_batch_goes_to_its_channel_s_streams_only(
        served: Any) -> None:
    import dataclasses

    rt, service = served(ServeConfig(port=0, live_streams=3, live_streams_per_client=2))
    conn = daqhub.connect(service.url)
    stage, dmm = conn.subscribe("stage/*"), conn.subscribe("dmm/*")
    assert stage.get(timeout=10) is not None and dmm.get(timeout=10) is not None
    # the publishing thread finds a batch's streams by its channel, not by asking them all
    assert {k: len(f) for k, f in service.counter.feeds.items()} == {
        ("stage", "position"): 1, ("dmm", "voltage"): 1}
    with pytest.raises(flight.FlightUnavailableError) as refused:
        conn.subscribe("stage/*")
    assert "127.0.0.1 already has 2 live streams open here" in clear_message(refused.value)
    assert "live_streams_per_client" in clear_message(refused.value)
    stage.close()
    wait_until(lambda: service.live_streams() == 1, "the closed stream's place to be free")
    assert set(service.counter.feeds) == {("dmm", "voltage")}
    service.config = dataclasses.replace(service.config, live_streams=1)
    with pytest.raises(flight.FlightUnavailableError, match="already serves 1 live streams"):
        conn.subscribe("stage/*")
    assert dmm.get(timeout=10) is not None  # the open one goes on
    dmm.close()


def test_a_remote_call_s_timeout_goes_to_the_driver_and_the_wait_stays_bounded(
        served: Any) -> None:
    rt, service = served(ServeConfig(port=0, token=TOKEN, actions=True))
    with daqhub.connect(service.url, token=TOKEN) as conn:
        # null was the server's own wait (unbounded); a wait without end is refused
        with pytest.raises(pa.ArrowInvalid, match="wait_until_done's timeout is a float, got None"):
            conn.call("stage", "wait_until_done", timeout=None)
        conn.call("stage", "move_absolute", 20.0)
        with pytest.raises(flight.FlightServerError, match="did not finish within 0 s"):
            conn.call("stage", "wait_until_done", timeout=0)
        assert conn.call("stage", "wait_until_done", timeout=20) == 20.0


def test_a_command_s_wait_comes_from_its_own_timeout_argument() -> None:
    from daqhub.command_limits import COMMAND_TIMEOUT_S, TIMEOUT_MARGIN_S, wait_limit

    class Driver:
        def wait_until_done(self, timeout: float = 30.0) -> None: ...

        def position(self) -> None: ...

    assert wait_limit(Driver, "wait_until_done", (2,), {}) == 2 + TIMEOUT_MARGIN_S
    assert wait_limit(Driver, "wait_until_done", (), {"timeout": 2}) == 2 + TIMEOUT_MARGIN_S
    assert wait_limit(Driver, "wait_until_done", (), {}) == 30 + TIMEOUT_MARGIN_S
    for endless in (None, float("nan"), float("inf"), 1e12, -1):
        assert wait_limit(Driver, "wait_until_done", (), {"timeout": endless}) == \
            COMMAND_TIMEOUT_S
    assert wait_limit(Driver, "position", (), {}) == COMMAND_TIMEOUT_S
    assert wait_limit(None, "anything", (), {}) == COMMAND_TIMEOUT_S


def test_a_remote_command_may_take_longer_than_the_connections_timeout(served: Any) -> None:
    """The client gave up after its own 10 s whatever the command's wait: a remote
    ``wait_until_done(timeout=30)`` failed while the service still waited for it."""
    rt, service = served(ServeConfig(port=0, token=TOKEN, actions=True))
    with daqhub.connect(service.url, token=TOKEN, timeout=0.5) as conn:
        conn.call("stage", "set_velocity", 1.0)
        conn.call("stage", "move_absolute", 20.0)
        t0 = time.monotonic()
        assert conn.call("stage", "wait_until_done", timeout=20) == pytest.approx(20.0)
        assert time.monotonic() - t0 > 0.5  # it did outlast the connection's timeout
