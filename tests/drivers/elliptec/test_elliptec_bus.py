"""Acceptance: a v2 and a v4 instrument share one Elliptec bus, over sim://, a pty and TCP.

A v2 ELL14 (address 0) and a v4 ELL9 (address 1) move and poll concurrently, from a thread and
an event loop, as the two runtimes would drive them. Their replies interleave on the one line
(a slider's deferred ``PO`` often arrives while the rotator's query is being read), and every
one of them must reach its own instrument: no protocol error, no damaged, stale or misrouted
line, every move ending where it was sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import cycle
from typing import Any

import pytest

from daqhub.driver import DriverDisconnectedError as ElliptecPortError
from daqhub.instrument import DriverError
from daqhub.resources import SerialPortManager
from daqhub_elliptec.discovery import adiscover, discover
from daqhub_elliptec.router import ROUTER_KEY, BusRouter
from daqhub_sims import registry
from daqhub_sims.pty_server import PtyServer
from daqhub_sims.tcp_server import TcpServer

pytestmark = pytest.mark.timeout(30)

POLL_PERIOD_S = 0.01
ROTATOR_TARGETS = (90.0, 200.0, 45.0, 300.0, 0.0)
SLIDER_SLOTS = (3.0, 1.0, 2.0, 0.0)
#: the moves each instrument makes at least (the bus shared all the while) ...
MIN_MOVES = 2
#: ... for which the drive goes on past its seconds this long at most
MORE_S = 10.0


@contextmanager
def transport(kind: str, sim_url: str, ser2net: Callable[..., Any] | None = None
              ) -> Iterator[str]:
    """The port name the driver opens to reach the simulated bus behind ``sim_url``."""
    if kind == "sim":
        yield sim_url
        return
    if kind == "ser2net":  # a real ser2net (RFC 2217) in front of the bus's pty
        assert ser2net is not None
        yield ser2net(sim_url).url
        return
    endpoint = registry.endpoint(sim_url)
    server: PtyServer | TcpServer = PtyServer(endpoint) if kind == "pty" else TcpServer(endpoint)
    with server:
        yield server.path if isinstance(server, PtyServer) else server.url


class Tally:
    def __init__(self) -> None:
        self.moves = 0
        self.polls_while_moving = 0
        self.queries = 0
        self.errors: list[BaseException] = []


def drive_rotator(inst: Any, finished: Callable[[], bool], stop: threading.Event,
                  tally: Tally) -> None:
    try:
        inst.connect()
        for target in cycle(ROTATOR_TARGETS):
            if finished():
                return
            inst.move_absolute(target)
            while inst.read()[0].metadata["moving"]:
                tally.polls_while_moving += 1
                stop.wait(POLL_PERIOD_S)
            assert inst.wait_until_done(5) == pytest.approx(target, abs=0.01)
            for _ in range(3):
                assert inst.position() == pytest.approx(target, abs=0.01)
                tally.queries += 1
            tally.moves += 1
    except BaseException as exc:  # reported by the test, with its traceback
        tally.errors.append(exc)
        stop.set()


async def drive_slider(actor: Any, finished: Callable[[], bool], stop: threading.Event,
                       tally: Tally) -> None:
    try:
        await actor.start()
        for slot in cycle(SLIDER_SLOTS):
            if finished() or stop.is_set():
                return
            await actor.move_absolute(slot)
            while True:
                [batch] = await actor.read()
                if '"moving": true' not in batch.column("metadata")[0].as_py():
                    break
                tally.polls_while_moving += 1
                await asyncio.sleep(POLL_PERIOD_S)
            assert await actor.wait_until_done(5) == slot
            assert await actor.position() == slot
            assert await actor.velocity() == 100
            tally.queries += 2
            tally.moves += 1
    except BaseException as exc:
        tally.errors.append(exc)
        stop.set()


def run_shared_bus(build: Callable[..., Any], port_name: str, seconds: float
                   ) -> tuple[Tally, Tally]:
    """Both drive the bus for ``seconds``, and on until each has made ``MIN_MOVES`` moves (at
    most ``MORE_S`` more): a fixed window left the slider one move short on a loaded box."""
    rotator = build(port_name, "elliptec.ell14", "v2", "rotator", address=0)
    slider = build(port_name, "elliptec.ell9", "v4", "slider", address=1)
    until = time.monotonic() + seconds
    stop = threading.Event()
    rot_tally, slider_tally = Tally(), Tally()

    def finished() -> bool:
        now = time.monotonic()
        return now >= until + MORE_S or (now >= until and min(
            rot_tally.moves, slider_tally.moves) >= MIN_MOVES)

    v4_thread = threading.Thread(
        target=lambda: asyncio.run(drive_slider(slider, finished, stop, slider_tally)),
        name="v4-loop")
    v4_thread.start()
    drive_rotator(rotator, finished, stop, rot_tally)
    v4_thread.join(15)
    assert not v4_thread.is_alive(), "the v4 loop did not finish"
    for tally in (rot_tally, slider_tally):
        if tally.errors:
            raise tally.errors[0]
    return rot_tally, slider_tally


@pytest.mark.parametrize(("kind", "seconds", "options"), [
    ("sim", 3.0, "&baud=1"),  # wire speed emulated: replies trickle in at 9600 baud
    ("pty", 1.5, ""),
    ("tcp", 1.5, ""),
    ("ser2net", 3.0, ""),  # each RFC 2217 open negotiates for ~0.5 s
])
def test_v2_and_v4_instruments_share_one_bus_without_protocol_errors(
        build: Callable[..., Any], manager: SerialPortManager, kind: str, seconds: float,
        options: str, ser2net: Callable[..., Any]) -> None:
    sim_url = (f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14,1:ELL9"
               f"&speed_scale=2{options}")
    with transport(kind, sim_url, ser2net) as port_name:
        rot, slider = run_shared_bus(build, port_name, seconds)
        router: BusRouter = manager.port(port_name).shared(ROUTER_KEY, lambda: BusRouter())
        stats = dict(router.stats)
    assert rot.moves >= MIN_MOVES and slider.moves >= MIN_MOVES, (rot.moves, slider.moves)
    assert rot.polls_while_moving > 0 and slider.polls_while_moving > 0
    for problem in ("garbled", "truncated", "stale", "overflow"):
        assert stats.get(problem, 0) == 0, stats
    assert stats["lines"] == stats["taken"], stats  # every line reached a waiter


def test_a_moves_end_read_by_another_instrument_reaches_its_own(
        build: Callable[..., Any], manager: SerialPortManager) -> None:
    sim_url = (f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14,1:ELL9"
               f"&speed_scale=0.5&baud=1")
    rotator = build(sim_url, "elliptec.ell14", "v2", "rotator", address=0)
    slider = build(sim_url, "elliptec.ell9", "v4", "slider", address=1)
    rotator.connect()
    router: BusRouter = manager.port(sim_url).shared(ROUTER_KEY, lambda: BusRouter())

    asyncio.run(slider.start())
    rotator.move_absolute(90)  # ~0.4 s; only the slider reads the bus meanwhile

    async def query_slider_until_the_rotator_has_stopped() -> int:
        queries = 0
        deadline = time.monotonic() + 5
        while router.stats["routed"] == 0 and time.monotonic() < deadline:
            assert await slider.velocity() == 100
            queries += 1
        return queries

    assert asyncio.run(query_slider_until_the_rotator_has_stopped()) > 1
    assert router.stats["routed"] == 1
    assert rotator.wait_until_done(1) == pytest.approx(90.0)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["pty", "ser2net"])
def test_a_pty_that_vanishes_fails_both_flavors_with_port_errors(
        build: Callable[..., Any], kind: str, ser2net: Callable[..., Any]) -> None:
    sim_url = f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14,1:ELL9"
    with transport(kind, sim_url, ser2net) as path:
        rotator = build(path, "elliptec.ell14", "v2", "rotator", address=0)
        slider = build(path, "elliptec.ell9", "v4", "slider", address=1)
        rotator.connect()
        asyncio.run(slider.start())
        registry.endpoint(sim_url).faults.disconnect()
        with pytest.raises(ElliptecPortError) as v2_err:
            rotator.position()
        with pytest.raises(DriverError) as v4_err:
            asyncio.run(slider.position())
    assert v2_err.value.instrument_id == "rotator" and v2_err.value.command == "0gp"
    assert v4_err.value.instrument_id == "slider" and v4_err.value.command == "1gp"


def test_discovery_finds_each_module_and_its_scaling(manager: SerialPortManager) -> None:
    url = f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14,1:ELL9,2:ELL20,A:ELL6"
    t0 = time.monotonic()
    found = discover(manager.port(url), reply_timeout=0.05)
    assert time.monotonic() - t0 < 3.0
    assert {a: info.model_name for a, info in found.found.items()} == {
        "0": "ELL14", "1": "ELL9", "2": "ELL20", "A": "ELL6"}
    assert found.found["0"].pulses == 143360 and found.found["2"].travel == 60
    assert found.damaged == {} and found.in_use == {}


def test_discovery_reports_two_modules_on_one_address_and_skips_claimed_ones(
        build: Callable[..., Any], manager: SerialPortManager) -> None:
    url = f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14,0:ELL9,3:ELL20"
    stage = build(url, "elliptec.ell20", "v4", "stage", address=3)
    asyncio.run(stage.start())
    found = asyncio.run(adiscover(manager.port(url), reply_timeout=0.05))
    assert found.found == {}
    assert list(found.damaged) == ["0"]
    assert found.in_use == {"3": "stage"}
