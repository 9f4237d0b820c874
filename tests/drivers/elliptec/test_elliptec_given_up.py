"""Replies the driver gave up on, and what they must never do to the commands after them.

A reply that comes after its waiter gave up, the end of a move that outran its timeout, a
reply cut short and glued to another module's, a module that stops answering: each used to
spoil something else (the next move's end, a move that never ran reported done, the position
from before a failed move, a healthy module's poll, every other module's rate). Both flavors,
against the simulated bus or a scripted one where the order of bytes must be exact.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from elliptec_scripted import ELL14_IN, ScriptedBus, call
from polling import wait_until

from daqhub.driver import DriverDisconnectedError, DriverError, DriverTimeoutError
from daqhub.resources import SerialPortManager
from daqhub_sims import registry

pytestmark = pytest.mark.timeout(30)

FLAVORS = ("v2", "v4")

ELL14_IN_1 = b"1" + ELL14_IN[1:]
ELL9_IN_1 = b"1IN" + b"09" + b"10600051" + b"2017" + b"08" + b"01" + b"001F" + b"00000000\r\n"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_late_reply_to_a_query_is_not_taken_as_the_end_of_the_next_move(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14", speed_scale="1")
    rot = build(url, "elliptec.ell14", flavor, "rot", address=0, reply_timeout=0.8)
    call(rot, flavor, "connect")
    faults = registry.endpoint(url).faults
    # The answer to gp (0.0 deg) comes 0.4 s after the driver gave up on it, and 0.4 s
    # before the move's `in` (asked first, answered after it) would time out.
    faults.latency = 1.2
    with pytest.raises(DriverTimeoutError):
        call(rot, flavor, "position")
    faults.latency = 0.0
    call(rot, flavor, "move_absolute", 90)  # ~0.2 s; the late 0PO00000000 comes first
    assert call(rot, flavor, "wait_until_done", 5) == pytest.approx(90.0)
    assert call(rot, flavor, "is_moving") is False
    assert call(rot, flavor, "bus_stats")["stale"] == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_move_sent_while_an_earlier_one_still_runs_waits_for_it_and_then_runs(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14", speed_scale="0.5")  # 430 deg/s at speed 1
    rot = build(url, "elliptec.ell14", flavor, "rot", address=0, move_timeout=1.0)
    call(rot, flavor, "connect")
    call(rot, flavor, "move_absolute", 300)  # 1.4 s: outruns move_timeout
    with pytest.raises(DriverTimeoutError, match="did not report its end"):
        call(rot, flavor, "wait_until_done", 5)
    # The module still moves for 0.4 s: a move sent now would be answered GS09 and not run.
    call(rot, flavor, "move_absolute", 100)
    assert call(rot, flavor, "wait_until_done", 5) == pytest.approx(100.0, abs=0.01)
    assert call(rot, flavor, "position") == pytest.approx(100.0, abs=0.01)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_move_is_refused_while_an_earlier_one_runs_longer_than_it_may_wait(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14", speed_scale="0.5")
    rot = build(url, "elliptec.ell14", flavor, "rot", address=0, move_timeout=0.3)
    call(rot, flavor, "connect")
    call(rot, flavor, "move_absolute", 300)  # 1.4 s
    with pytest.raises(DriverTimeoutError):
        call(rot, flavor, "wait_until_done", 5)
    with pytest.raises(DriverError) as err:
        call(rot, flavor, "move_absolute", 100)
    assert err.value.code == "09" and err.value.command == "0ma00009B8E"
    assert "still running an earlier move ('0ma0001D2AB'" in err.value.message
    assert "was not sent" in err.value.message
    assert call(rot, flavor, "position") == pytest.approx(300.0, abs=0.01)  # waited out


@pytest.mark.parametrize("flavor", FLAVORS)
def test_after_a_failed_move_the_position_is_asked_not_the_one_from_before(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14", speed_scale="1")
    rot = build(url, "elliptec.ell14", flavor, "rot", address=0, move_timeout=0.3)
    call(rot, flavor, "connect")
    call(rot, flavor, "move_absolute", 300)  # 0.7 s
    with pytest.raises(DriverTimeoutError):
        call(rot, flavor, "wait_until_done", 5)
    assert call(rot, flavor, "wait_until_done", 5) == pytest.approx(300.0, abs=0.01)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_move_whose_end_was_lost_with_the_link_is_blamed_on_the_link_and_re_read(
        build: Callable[..., Any], bus_url: Callable[..., str], manager: SerialPortManager,
        flavor: str) -> None:
    url = bus_url("0:ELL14", speed_scale="0.5")
    rot = build(url, "elliptec.ell14", flavor, "rot", address=0, move_timeout=2.0)
    call(rot, flavor, "connect")
    call(rot, flavor, "move_absolute", 90)  # 0.4 s
    faults = registry.endpoint(url).faults
    faults.disconnect()
    with pytest.raises(DriverDisconnectedError):
        call(rot, flavor, "wait_until_done", 5)
    device = registry.endpoint(url).device
    wait_until(lambda: not device.unit("0").busy(device.clock.now()), "the move to end")
    faults.reconnect()  # its PO went out while the link was down
    port = manager.port(url)
    wait_until(lambda: port.is_connected, "the manager to reopen the port", timeout=5)
    with pytest.raises(DriverTimeoutError) as err:
        call(rot, flavor, "wait_until_done", 5)
    assert "the link to the bus went down" in err.value.message
    assert call(rot, flavor, "wait_until_done", 5) == pytest.approx(90.0)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_reply_cut_to_two_bytes_fails_its_own_move_not_the_next_modules_poll(
        build: Callable[..., Any], scripted_url: str, flavor: str) -> None:
    device = registry.endpoint(scripted_url).device
    assert isinstance(device, ScriptedBus)
    device.script.update({"0in": ELL14_IN, "0gp": b"0PO00000000\r\n", "0gs": b"0GS00\r\n",
                          "1in": ELL9_IN_1, "1gp": b"1PO00000000\r\n"})
    rot = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0)
    slider = build(scripted_url, "elliptec.ell9", flavor, "slider", address=1)
    call(rot, flavor, "connect")
    call(slider, flavor, "connect")
    call(rot, flavor, "move_absolute", 90)  # its end comes cut to "0P", just before ...
    device.script["1gp"] = b"0P1PO0000001F\r\n"  # ... the slider's answer to gp
    assert call(slider, flavor, "position") == 1.0
    with pytest.raises(DriverError) as err:
        call(rot, flavor, "wait_until_done", 1)
    assert "truncated reply b'0P' from address 0" in err.value.message
    assert call(rot, flavor, "bus_stats")["truncated"] == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_silent_module_does_not_hold_up_the_others_on_its_bus(
        build: Callable[..., Any], scripted_url: str, flavor: str) -> None:
    device = registry.endpoint(scripted_url).device
    assert isinstance(device, ScriptedBus)
    device.script.update({"0in": ELL14_IN, "0gp": b"0PO00000000\r\n",
                          "1in": ELL14_IN_1, "1gp": b"1PO00008C00\r\n", "1gv": b"1GV64\r\n"})
    dead = build(scripted_url, "elliptec.ell14", flavor, "dead", address=0, reply_timeout=4)
    healthy = build(scripted_url, "elliptec.ell14", flavor, "healthy", address=1)
    call(dead, flavor, "connect")
    call(healthy, flavor, "connect")
    device.script["0gp"] = b""  # module 0 is unplugged
    outcome: list[BaseException] = []

    def poll_the_dead_module() -> None:
        try:
            call(dead, flavor, "position")
        except BaseException as exc:  # checked below
            outcome.append(exc)

    asked = device.received.count("0gp")
    waiter = threading.Thread(target=poll_the_dead_module)
    waiter.start()
    try:
        wait_until(lambda: device.received.count("0gp") > asked, "the dead module's gp")
        t0 = time.monotonic()
        for _ in range(5):  # each waited for the gate behind the dead exchange's 4 s
            assert call(healthy, flavor, "position") == pytest.approx(90.0)
        assert time.monotonic() - t0 < 2.0
        assert waiter.is_alive()  # all of it while module 0's reply was still awaited
    finally:
        waiter.join(10)
    [err] = outcome
    assert isinstance(err, DriverTimeoutError)
    assert "no reply from address 0 within 4.00 s" in str(err)


def test_v4_polls_of_a_healthy_module_keep_their_pace_beside_a_silent_one(
        build: Callable[..., Any], scripted_url: str) -> None:
    """The same from one event loop: the silent module's wait is a task of its own."""
    device = registry.endpoint(scripted_url).device
    assert isinstance(device, ScriptedBus)
    device.script.update({"0in": ELL14_IN, "0gp": b"0PO00000000\r\n",
                          "1in": ELL14_IN_1, "1gp": b"1PO00008C00\r\n", "1gv": b"1GV64\r\n"})
    dead = build(scripted_url, "elliptec.ell14", "v4", "dead", address=0, reply_timeout=2)
    healthy = build(scripted_url, "elliptec.ell14", "v4", "healthy", address=1)

    async def main() -> tuple[float, bool]:
        await dead.start()
        await healthy.start()
        device.script["0gp"] = b""
        silent = asyncio.create_task(dead.position())
        t0 = time.monotonic()
        for _ in range(5):
            assert await healthy.position() == pytest.approx(90.0)
        took = time.monotonic() - t0
        still_waiting = not silent.done()
        with pytest.raises(DriverTimeoutError):
            await silent
        return took, still_waiting

    took, still_waiting = asyncio.run(main())
    assert took < 1.5 and still_waiting
