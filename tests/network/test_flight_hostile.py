"""The data service against clients that send what they should not: a command's wrong
arguments, JSON nested thousands deep, a queue larger than the lab allows, the Flight calls it
does not offer, and a client on IPv6 (named as it is)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flight_lab import ipv6_loopback, lab_text, served_run
from polling import wait_until

import daqhub
from daqhub.serve_config import ServeConfig

pytestmark = pytest.mark.timeout(90)
TOKEN = "hostile-token"
PSU = """
[[v4.instruments]]
id = "psu"
type = "scpi.psu"
resource = "GPIB0::6::INSTR"
visa_backend = "{backend}"
poll_hz = 2
"""


@pytest.fixture
def psu_lab(tmp_path: Path, visa_sim_backend: Callable[..., str],
            sim_url: Callable[..., str]) -> str:
    backend = visa_sim_backend()
    return lab_text(tmp_path / "data", backend, sim_url("esp300", speed_scale=20),
                    extra=PSU.format(backend=backend))


def errors(rt: Any, iid: str) -> int:
    return next(int(i["errors"]) for i in rt.health()["instruments"] if i["id"] == iid)


def test_a_remote_command_with_arguments_its_driver_refuses_is_not_sent(
        psu_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    """``set_output("off")`` went out as ``OUTP 1`` (a string is true): the supply turned on,
    and the client was told it succeeded. The Lab API refuses it; so does the service now,
    with the same message, sending nothing and counting no instrument error."""
    config = ServeConfig(port=0, token=TOKEN, actions=True)
    with served_run(psu_lab, daqhub_host, tmp_path, config) as (rt, service), \
            daqhub.connect(service.url, token=TOKEN) as conn:
        wait_until(lambda: rt.counts().get("psu"), "the supply's first samples")
        assert conn.call("psu", "query", "OUTP?") == "0"
        with pytest.raises(pa.ArrowInvalid) as refused:
            conn.call("psu", "set_output", "off")
        assert str(refused.value) == ("psu: set_output's on is a bool, got 'off' (daqhub "
                                      "plugins scpi.psu lists its commands and arguments)")
        with pytest.raises(pa.ArrowInvalid, match=r"dmm: read takes 0 arguments \(\), got 1"):
            conn.call("dmm", "read", 1)  # was "SessionActor.read() takes 1 positional ..."
        assert conn.call("psu", "query", "OUTP?") == "0"  # still off: nothing was sent
        assert errors(rt, "psu") == 0 and errors(rt, "dmm") == 0
        assert conn.call("psu", "set_output", False) is None  # a right one still goes


def test_json_nested_too_deeply_is_a_bad_request(psu_lab: str, daqhub_host: Any,
                                                 tmp_path: Path) -> None:
    """A ticket or an action nested some thousands deep was a RecursionError, sent back with
    the server's traceback as a server failure."""
    config = ServeConfig(port=0, token=TOKEN, actions=True)
    deep_ticket = b'{"live": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # within the 4 KiB limit
    deep_call = json.dumps({"instrument": "psu", "method": "query"})[:-1].encode() + \
        b', "args": ' + b"[" * 30000 + b"]" * 30000 + b"}"
    with served_run(psu_lab, daqhub_host, tmp_path, config) as (_, service), \
            daqhub.connect(service.url, token=TOKEN) as conn:
        with pytest.raises(pa.ArrowInvalid) as ticket:
            conn.client.do_get(flight.Ticket(deep_ticket), conn.options()).read_all()
        assert str(ticket.value).startswith("ticket is not JSON: nested too deeply")
        with pytest.raises(pa.ArrowInvalid) as action:
            list(conn.client.do_action(flight.Action("call", deep_call), conn.options()))
        assert str(action.value).startswith("call is not JSON: nested too deeply")
        assert conn.call("psu", "query", "OUTP?") == "0"  # and the service goes on


def test_the_calls_the_service_does_not_offer_are_refused_in_a_plain_message(
        psu_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    """A plain pyarrow client calling do_put, do_exchange, get_schema or get_flight_info got
    an empty NotImplementedError with the server's Python traceback and source paths."""
    with served_run(psu_lab, daqhub_host, tmp_path, ServeConfig(port=0)) as (_, service):
        client = flight.connect(service.url)
        where = flight.FlightDescriptor.for_path("live", "dmm", "voltage")
        attempts: dict[str, Callable[[], object]] = {
            "do_put": lambda: client.do_put(where, pa.schema([("x", pa.int8())]))[0].close(),
            "do_exchange": lambda: client.do_exchange(where)[1].read_all(),
            "get_schema": lambda: client.get_schema(where),
            "get_flight_info": lambda: client.get_flight_info(where)}
        for name, attempt in attempts.items():
            with pytest.raises((flight.FlightServerError, OSError)) as refused:
                attempt()  # pyarrow's client raises OSError for get_schema's
            said = str(refused.value)
            assert said.startswith(f"this daqhub service only serves data: {name} is not "
                                   "offered"), said
            assert "Traceback" not in said and ".py" not in said, said
        assert len(list(client.list_flights())) >= 3  # what it does offer
        client.close()


def test_a_client_asks_at_most_the_lab_s_queue(
        daqhub_host: Any, tmp_path: Path, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    """A client's own ``"queue": 1000000`` was its stream's queue: 120 slow streams grew the
    run by 3 MB/s, on to 11 GB an hour. The lab's ``queue_batches`` is the most it gets: a
    stream not read loses its oldest batches once that many wait."""
    # the DMM at 1 kHz: a stream not read is behind within a second, once gRPC's buffers
    # between it and the server are full
    fast_lab = lab_text(tmp_path / "data", visa_sim_backend(),
                        sim_url("esp300", speed_scale=20), poll_hz=1000, stage_hz=20)
    with served_run(fast_lab, daqhub_host, tmp_path,
                    ServeConfig(port=0, queue_batches=2)) as (rt, service):
        client = flight.connect(service.url)
        ticket = flight.Ticket(json.dumps({"live": "dmm/voltage", "queue": 1_000_000}).encode())
        reader = client.do_get(ticket)
        first = reader.read_chunk()
        start = json.loads(first.app_metadata.to_pybytes())["first_row"]
        wait_until(lambda: rt.counts()["dmm"]["voltage"] >= start + 3000, "3000 more rows",
                   timeout=30)
        rt.shutdown()
        service.stop()
        dropped = 0
        for chunk in reader:
            dropped = json.loads(chunk.app_metadata.to_pybytes())["dropped_batches"]
        assert dropped > 0
        client.close()


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_an_ipv6_client_is_named_as_its_address_is_written(
        psu_lab: str, daqhub_host: Any, tmp_path: Path) -> None:
    """gRPC names an IPv6 peer URL-encoded: the limit's message said ``%5B::1%5D``."""
    config = ServeConfig(host="::1", port=0, live_streams_per_client=1)
    with served_run(psu_lab, daqhub_host, tmp_path, config) as (_, service):
        client = flight.connect(service.url)
        live = client.do_get(flight.Ticket(b'{"live": "dmm/voltage"}'))
        live.read_chunk()  # open
        with pytest.raises(flight.FlightUnavailableError) as refused:
            client.do_get(flight.Ticket(b'{"live": "psu/voltage"}')).read_all()
        assert str(refused.value).startswith("::1 already has 1 live streams open here")
        client.close()
