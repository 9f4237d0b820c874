"""daqhub.driver.bus: an exchange whose plan stops waiting (a v4 call cancelled by its
timeout or ``asyncio.wait_for``, a plan closed) leaves its reply owed, as one whose deadline
passed, so the late reply never answers the address's next command; so does a send of a
move, once written; and a line a cancelled collect took is there for the next one.

A toolkit bus session (the Elliptec line format) on a simulated Elliptec bus, whose
``latency`` makes every reply come late; and the same through a lab, where a v4 read past
``read_timeout_s`` is cancelled.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

import daqhub
import daqhub_sims
from daqhub.driver.bus import Asked, Collect, Exchange, Send
from daqhub.driver.session import arun, run
from daqhub.resources import SerialPortManager
from daqhub.specs import InstrumentContext
from daqhub_elliptec.driver import ElliptecBus
from daqhub_elliptec.frames import Command, Frame
from daqhub_elliptec.router import Expectation

pytestmark = pytest.mark.timeout(30)

#: 90 degrees of an ELL14, in pulses (hex): where the move after the cancelled query goes
AT_90 = "00008C00"


@pytest.fixture
def manager() -> Iterator[SerialPortManager]:
    daqhub_sims.install()
    mgr = SerialPortManager(url_packages=[daqhub_sims.URL_HANDLER_PACKAGE])
    yield mgr
    mgr.close_all()


@pytest.fixture
def bus(manager: SerialPortManager) -> Callable[[float], ElliptecBus]:
    """``bus(latency)``: a session on a fresh simulated bus with an ELL14 at address 0 (at 0
    degrees), whose replies come ``latency`` s after their command."""

    def make(latency: float) -> ElliptecBus:
        url = (f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14&speed_scale=4"
               f"&latency={latency}")
        port = manager.port(url, **ElliptecBus.serial_settings)
        return ElliptecBus(InstrumentContext("bus", "elliptec.bus", {}, (), port=port))

    return make


def plan(step: Any) -> Generator[Any, Any, Any]:
    """A one-step plan: a bus step is run only as a plan's."""
    return (yield step)


def position_query() -> Expectation:
    return Expectation(Command("0", "gp", reply="PO"))


def move_to_90() -> Expectation:
    return Expectation(Command("0", "ma", AT_90, reply="PO", deferred=True))


def move_end(session: ElliptecBus) -> str:
    """Move to 90 degrees and collect the move's end: the position it reports."""
    move = move_to_90()
    run(session, plan(Send(move.command)))
    line = run(session, plan(Collect(move, 10.0)))
    assert isinstance(line, Frame), line
    return line.data


def writes(session: ElliptecBus) -> int:
    """Transactions the port ran (a write each, for these commands)."""
    return int(session.resource.stats()["transactions"])


@pytest.mark.parametrize("cancel_after", ["written", "handed on"])
def test_a_cancelled_exchange_leaves_its_reply_owed_not_answering_the_next_command(
        bus: Callable[[float], ElliptecBus], cancel_after: str) -> None:
    """Cancelled while its transaction runs (writing the command, then reading), or once that
    handed the wait on (after ``PUMP_BUDGET_S``): the position comes 2 s late, after the next
    command (a move) was sent, and used to be taken as the move's end (0 degrees)."""
    session = bus(2.0)
    query = position_query()
    before = writes(session)

    def ready() -> bool:
        if cancel_after == "written":  # its transaction runs: it writes, then reads
            return bool(session.router.poll(query)[2])
        return writes(session) > before  # its transaction ended, handing the wait on

    async def cancelled_query() -> None:
        task = asyncio.create_task(arun(session, plan(Exchange(query, reply_timeout=5.0))))
        await asyncio.to_thread(wait_until, ready, f"the exchange to be {cancel_after}")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled_query())
    assert session.router.owed("0") is query  # at once: a driver checks before its next command
    assert move_end(session) == AT_90
    assert session.router.stats["stale"] == 1  # the late position, counted, never filed
    assert session.router.owed("0") is None


def test_an_exchange_closed_while_it_waits_for_its_reply_leaves_it_owed(
        bus: Callable[[float], ElliptecBus]) -> None:
    """The plan of an exchange, closed (as when whoever ran it stopped) after the command was
    written and its transaction handed the wait on."""
    session = bus(1.0)
    query = position_query()
    ask = session.ask(Exchange(query, reply_timeout=5.0))
    asked = run(session, next(ask))  # the write, and the first read
    assert isinstance(asked, Asked)
    ask.send(asked)  # the wait for the rest: its first step
    ask.close()
    assert session.router.owed("0") is query
    assert move_end(session) == AT_90
    assert session.router.stats["stale"] == 1


def test_an_exchange_cancelled_before_its_command_was_written_owes_nothing(
        bus: Callable[[float], ElliptecBus]) -> None:
    """Cancelled while queued for the port: nothing is sent, and the next command is not
    held up by an ``in`` for a reply that will never come."""
    session = bus(0.0)
    port = session.resource
    query = position_query()
    release = threading.Event()
    held = threading.Event()

    def hold_port() -> None:
        with port.lease(owner="other"):
            held.set()
            release.wait(10.0)

    holder = threading.Thread(target=hold_port)
    holder.start()
    try:
        assert held.wait(10.0)
        before = writes(session)

        async def cancelled_query() -> None:
            task = asyncio.create_task(arun(session, plan(Exchange(query, reply_timeout=5.0))))
            await asyncio.to_thread(wait_until, lambda: port.stats()["queue_depth"] == 1,
                                    "the exchange to queue for the port")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_query())
    finally:
        release.set()
        holder.join(10.0)
    assert session.router.owed("0") is None
    assert writes(session) == before
    assert move_end(session) == AT_90
    assert session.router.stats["stale"] == 0


def test_a_v4_elliptec_whose_reads_are_cancelled_still_waits_for_the_end_of_its_moves(
        tmp_path: Path) -> None:
    """A slow line (replies 0.4 s late) under ``read_timeout_s = 0.35``: every poll is
    cancelled mid-exchange, and a move used to "end" at once where the axis was before it."""
    url = f"sim://elliptec?name=t{uuid.uuid4().hex}&devices=0:ELL14&latency=0.4"
    cfg = {"daqhub": {"output_dir": str(tmp_path), "shutdown_timeout": 5,
                      "restart": {"read_timeout_s": 0.35}},
           "v4": {"enabled": True, "storage": "arrow", "instruments": [
               {"id": "rot", "type": "elliptec.ell14", "port": url, "address": 0,
                "poll_hz": 5}]}}
    with daqhub.open_lab(cfg, report=None) as lab:
        wait_until(lambda: poll_errors(lab) > 0, "a poll cancelled mid-exchange")
        rot = lab["rot"]
        rot.move_absolute(200.0)
        assert rot.wait_until_done(20) == pytest.approx(200.0, abs=0.01)
        assert rot.position() == pytest.approx(200.0, abs=0.01)


def poll_errors(lab: daqhub.Lab) -> int:
    return int(lab.health()["instruments"][0]["errors"])


def held_after(monkeypatch: pytest.MonkeyPatch, session: ElliptecBus, name: str,
               then: Callable[[], object]) -> threading.Event:
    """Make the router's transaction function ``name`` (``pump``, ``send``) call ``then``
    once, when it has done its I/O (taken a line, or written), before its transaction ends.
    The returned event is set then."""
    router = session.router
    original = getattr(router, name)
    done = threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not done.is_set() and (name == "send" or result is not None):
            done.set()
            then()
        return result

    monkeypatch.setattr(router, name, held)
    return done


@pytest.mark.parametrize("cancelled", ["while its transaction runs", "as its transaction ends"])
def test_the_line_a_cancelled_collect_took_is_there_for_the_next_collect(
        bus: Callable[[float], ElliptecBus], monkeypatch: pytest.MonkeyPatch,
        cancelled: str) -> None:
    """A wait for a move's end (``wait_until_done``) cancelled while its read of the bus
    takes the end, or once it took it but before the wait got it: the line used to reach
    nobody, and the next wait for the same move timed out though the move had ended."""
    session = bus(0.0)
    move = move_to_90()
    release = threading.Event()

    async def cancelled_collect() -> None:
        task = asyncio.create_task(arun(session, plan(Collect(move, 10.0))))
        loop = asyncio.get_running_loop()
        if cancelled == "while its transaction runs":
            took = held_after(monkeypatch, session, "pump", lambda: release.wait(10.0))
            await asyncio.to_thread(took.wait, 10.0)
            task.cancel()
        else:  # the cancel reaches the loop before the transaction's result does
            held_after(monkeypatch, session, "pump",
                       lambda: loop.call_soon_threadsafe(task.cancel))
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    run(session, plan(Send(move.command)))
    asyncio.run(cancelled_collect())
    line = run(session, plan(Collect(move, 2.0)))
    assert isinstance(line, Frame) and line.data == AT_90


def test_a_send_cancelled_once_written_leaves_its_later_reply_owed(
        bus: Callable[[float], ElliptecBus], monkeypatch: pytest.MonkeyPatch) -> None:
    """A move's send cancelled while its transaction runs, after the write: the move runs and
    nobody will collect its end, which is owed at once, so it cannot answer the address's
    next command (it used to be owed nothing)."""
    session = bus(0.0)
    move = move_to_90()
    release = threading.Event()
    written = held_after(monkeypatch, session, "send", lambda: release.wait(10.0))

    async def cancelled_send() -> None:
        task = asyncio.create_task(arun(session, plan(Send(move.command, reply=move))))
        await asyncio.to_thread(written.wait, 10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert session.router.owed("0") is move  # while its transaction still runs

    try:
        asyncio.run(cancelled_send())
    finally:
        release.set()
    assert session.router.owed("0") is move


def test_a_send_cancelled_before_its_command_was_written_owes_nothing(
        bus: Callable[[float], ElliptecBus]) -> None:
    """Cancelled while queued for the port: nothing is sent, and nothing is owed."""
    session = bus(0.0)
    port = session.resource
    move = move_to_90()
    release = threading.Event()
    held = threading.Event()

    def hold_port() -> None:
        with port.lease(owner="other"):
            held.set()
            release.wait(10.0)

    async def cancelled_send() -> None:
        task = asyncio.create_task(arun(session, plan(Send(move.command, reply=move))))
        await asyncio.to_thread(wait_until, lambda: port.stats()["queue_depth"] == 1,
                                "the send to queue for the port")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    holder = threading.Thread(target=hold_port)
    holder.start()
    try:
        assert held.wait(10.0)
        before = writes(session)
        asyncio.run(cancelled_send())
    finally:
        release.set()
        holder.join(10.0)
    assert session.router.owed("0") is None
    assert writes(session) == before
