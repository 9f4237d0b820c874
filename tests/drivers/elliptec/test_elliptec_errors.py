"""Error paths: status codes, busy modules, damaged replies, silence and a vanished port.

Every failure must surface as a DriverError (or its timeout / port subclasses) that names the
instrument and the command, quickly, and the driver must keep working once the cause is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from elliptec_scripted import ELL14_IN, ScriptedBus, call
from polling import wait_until

from daqhub.driver import DriverDisconnectedError as ElliptecPortError
from daqhub.driver import DriverTimeoutError as ElliptecTimeout
from daqhub.instrument import DriverError
from daqhub.resources import SerialPortManager
from daqhub_elliptec import status
from daqhub_elliptec.router import ROUTER_KEY
from daqhub_sims import registry

pytestmark = pytest.mark.timeout(20)

FLAVORS = ("v2", "v4")


def scripted(url: str) -> ScriptedBus:
    device = registry.endpoint(url).device
    assert isinstance(device, ScriptedBus)
    device.script.update({"0in": ELL14_IN, "0gp": b"0PO00000000\r\n", "0gs": b"0GS00\r\n"})
    return device


# ---------------------------------------------------------------------- status codes
ERROR_CODES = [c for c in range(0x01, 0x0E) if c != status.BUSY] + [0x0E, 0x42, 0xFF]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("code", ERROR_CODES, ids=lambda c: f"GS{c:02X}")
def test_each_status_code_becomes_a_driver_error_with_the_manual_message(
        build: Callable[..., Any], scripted_url: str, flavor: str, code: int) -> None:
    device = scripted(scripted_url)
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    device.script["0gp"] = f"0GS{code:02X}\r\n".encode()
    device.received.clear()
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "position")
    assert err.value.code == f"{code:02X}"
    assert err.value.instrument_id == "rot" and err.value.command == "0gp"
    assert status.message(code) in str(err.value)
    assert device.received == ["0gp", "0gs"]  # the sticky code is read (cleared) at once


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_busy_module_is_asked_again_until_it_answers(
        build: Callable[..., Any], scripted_url: str, flavor: str) -> None:
    device = scripted(scripted_url)
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    device.script["0gp"] = [b"0GS09\r\n", b"0GS09\r\n", b"0PO00008C00\r\n"]
    assert call(inst, flavor, "position") == pytest.approx(90.0)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_module_that_stays_busy_gives_a_busy_error(
        build: Callable[..., Any], scripted_url: str, flavor: str) -> None:
    device = scripted(scripted_url)
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    inst.session.axis.busy_timeout = 0.3
    device.script["0gp"] = b"0GS09\r\n"
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "position")
    assert err.value.code == "09" and err.value.command == "0gp"
    assert "still busy" in err.value.message


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_interim_busy_before_the_end_of_a_move_is_not_an_error(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    inst = build(bus_url("0:ELL14", interim_busy="1"), "elliptec.ell14", flavor, "rot",
                 address=0)
    call(inst, flavor, "connect")
    call(inst, flavor, "move_absolute", 90)
    assert call(inst, flavor, "wait_until_done", 5) == pytest.approx(90.0)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_stalled_motor_reports_a_mechanical_timeout(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    inst = build(bus_url("0:ELL14", stall="0", drive_timeout="0.2"), "elliptec.ell14",
                 flavor, "rot", address=0)
    call(inst, flavor, "connect")
    call(inst, flavor, "move_absolute", 90)
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "wait_until_done", 5)
    assert err.value.code == "02" and err.value.command == "0ma00008C00"
    assert "mechanical timeout" in err.value.message


def test_a_failed_move_seen_by_a_poll_is_raised_by_the_next_motion_call(
        build: Callable[..., Any], bus_url: Callable[..., str]) -> None:
    inst = build(bus_url("2:ELL20"), "elliptec.ell20", "v2", "stage", address=2)
    inst.connect()
    inst.move_absolute(70)  # beyond the 60 mm travel
    wait_until(lambda: not inst.read()[0].metadata["moving"], "the poll to see the end", timeout=5)
    assert inst.read()[0].data.value == 0.0  # polls never raise for the move
    with pytest.raises(DriverError) as err:
        inst.is_moving()
    assert err.value.code == "0C"
    assert inst.is_moving() is False  # raised once


# ---------------------------------------------------------------------- damaged replies
@pytest.mark.parametrize("flavor", FLAVORS)
def test_garbage_alone_is_a_garbled_reply_error(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    faults = registry.endpoint(url).faults
    faults.truncate_next(0)  # the real reply is lost...
    faults.inject_garbage(b"\xfe#?!\r\n")  # ...and noise arrives instead
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "position")
    assert "garbled reply" in err.value.message
    assert err.value.instrument_id == "rot" and err.value.command == "0gp"
    assert call(inst, flavor, "position") == 0.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_noise_before_a_complete_reply_is_counted_and_the_reply_used(
        build: Callable[..., Any], bus_url: Callable[..., str], manager: SerialPortManager,
        flavor: str) -> None:
    url = bus_url("0:ELL14")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    registry.endpoint(url).faults.inject_garbage(b"\x00\xff\x13")
    call(inst, flavor, "move_absolute", 90)
    assert call(inst, flavor, "wait_until_done", 5) == pytest.approx(90.0)
    router = manager.port(url).shared(ROUTER_KEY, lambda: None)
    assert router.stats["garbled"] == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_truncated_reply_is_an_error_and_the_next_command_works(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    registry.endpoint(url).faults.truncate_next(6)
    t0 = time.monotonic()
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "velocity")
    assert time.monotonic() - t0 < 1.0
    assert "truncated reply" in err.value.message and err.value.command == "0gv"
    assert call(inst, flavor, "velocity") == 100


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_truncated_end_of_move_fails_the_move(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    registry.endpoint(url).faults.truncate_next(4)
    call(inst, flavor, "move_absolute", 90)
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "wait_until_done", 5)
    assert "truncated reply b'0PO0'" in err.value.message
    assert err.value.command == "0ma00008C00"
    assert call(inst, flavor, "position") == pytest.approx(90.0)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("answer, says", [(b"5IN0E114", "truncated reply b'5IN0E114'"),
                                          (b"\xfe#?!\r\n", "garbled reply")],
                         ids=["truncated", "garbled"])
def test_change_address_onto_an_address_that_answers_damaged_bytes_is_refused(
        build: Callable[..., Any], scripted_url: str, flavor: str, answer: bytes,
        says: str) -> None:
    """Damaged bytes to ``in`` at the new address: something is there (two modules, say)."""
    device = scripted(scripted_url)
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    device.script["5in"] = answer
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "change_address", 5)
    assert err.value.command == "0ca5"
    assert "address 5 is in use" in err.value.message and says in err.value.message
    assert "0ca5" not in device.received  # refused before anything was re-addressed
    assert call(inst, flavor, "identity")["address"] == "0"


#: Shorter than the router's TRUNCATION_GAP_S: the driver gives up on a reply cut short
#: while its bytes are still an unfinished line.
SHORT_REPLY_TIMEOUT = 0.15


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_reply_cut_short_at_the_reply_timeout_fails_only_its_own_command(
        build: Callable[..., Any], scripted_url: str, flavor: str) -> None:
    device = scripted(scripted_url)
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0,
                 reply_timeout=SHORT_REPLY_TIMEOUT)
    call(inst, flavor, "connect")
    device.script["0gp"] = [b"0PO00", b"0PO00002300\r\n"]  # cut once, then in full
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "position")
    assert err.value.instrument_id == "rot" and err.value.command == "0gp"
    assert "truncated reply b'0PO00' from address 0" in err.value.message
    assert call(inst, flavor, "position") == pytest.approx(22.5)
    stats = call(inst, flavor, "bus_stats")
    assert stats["truncated"] == 1 and stats["stale"] == 1


# ---------------------------------------------------------------------- silence
@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_address_nobody_answers_times_out_naming_instrument_and_command(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    inst = build(bus_url("0:ELL14"), "elliptec.ell14", flavor, "ghost", address=7,
                 reply_timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(ElliptecTimeout) as err:
        call(inst, flavor, "connect")
    assert time.monotonic() - t0 < 1.5
    assert isinstance(err.value, TimeoutError) and isinstance(err.value, DriverError)
    assert err.value.instrument_id == "ghost" and err.value.command == "7in"
    assert "no reply from address 7 within 0.20 s" in str(err.value)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_late_reply_is_not_mistaken_for_the_next_one(
        build: Callable[..., Any], bus_url: Callable[..., str], manager: SerialPortManager,
        flavor: str) -> None:
    url = bus_url("0:ELL14")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0, reply_timeout=0.2)
    call(inst, flavor, "connect")
    call(inst, flavor, "set_velocity", 50)
    faults = registry.endpoint(url).faults
    faults.latency = 0.4
    with pytest.raises(ElliptecTimeout):
        call(inst, flavor, "velocity")  # its GV32 arrives after the driver gave up
    port = manager.port(url)
    wait_until(lambda: port.transaction(lambda io: io.in_waiting) > 0, "the late GV32", timeout=5)
    faults.latency = 0.0
    call(inst, flavor, "set_velocity", 70)
    assert call(inst, flavor, "velocity") == 70
    assert call(inst, flavor, "bus_stats")["stale"] == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_move_that_never_reports_its_end_times_out_and_the_axis_recovers(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    inst = build(bus_url("2:ELL20", speed_scale="1"), "elliptec.ell20", flavor, "stage",
                 address=2, move_timeout=0.1)
    call(inst, flavor, "connect")
    call(inst, flavor, "move_absolute", 40)  # ~0.8 s
    with pytest.raises(ElliptecTimeout) as err:
        call(inst, flavor, "wait_until_done", 5)
    assert err.value.command == "2ma0000A000"
    assert "did not report its end (PO) within 0.1 s" in err.value.message
    # the module is still moving: the next query retries through its busy replies
    assert call(inst, flavor, "position") == pytest.approx(40.0)


def test_waiting_less_than_the_move_takes_is_a_timeout_not_a_failure(
        build: Callable[..., Any], bus_url: Callable[..., str]) -> None:
    inst = build(bus_url("0:ELL14", speed_scale="0.25"), "elliptec.ell14", "v2", "rot",
                 address=0)
    inst.connect()
    inst.move_absolute(90)
    with pytest.raises(ElliptecTimeout, match="still running after waiting 0.1 s"):
        inst.wait_until_done(0.1)
    assert inst.wait_until_done(5) == pytest.approx(90.0)


# ---------------------------------------------------------------------- disconnects
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_vanished_port_is_a_port_error_naming_instrument_and_command(
        build: Callable[..., Any], bus_url: Callable[..., str], manager: SerialPortManager,
        flavor: str) -> None:
    url = bus_url("0:ELL14")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    faults = registry.endpoint(url).faults
    faults.disconnect()
    with pytest.raises(ElliptecPortError) as err:
        call(inst, flavor, "position")
    assert isinstance(err.value, DriverError) and isinstance(err.value, ConnectionError)
    assert err.value.instrument_id == "rot" and err.value.command == "0gp"
    assert "disconnected" in err.value.message
    faults.reconnect()
    port = manager.port(url)
    wait_until(lambda: port.is_connected, "the manager to reopen the port", timeout=5)
    assert call(inst, flavor, "position") == 0.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_start_of_a_reply_read_before_an_unplug_is_gone_after_the_reopen(
        build: Callable[..., Any], scripted_url: str, manager: SerialPortManager,
        flavor: str) -> None:
    device = scripted(scripted_url)
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0,
                 reply_timeout=SHORT_REPLY_TIMEOUT)
    call(inst, flavor, "connect")
    device.script["0gp"] = [b"0PO00", b"0PO00002300\r\n"]
    with pytest.raises(DriverError, match="truncated reply"):
        call(inst, flavor, "position")  # its start is left unfinished on the line
    faults = registry.endpoint(scripted_url).faults
    faults.disconnect()
    with pytest.raises(ElliptecPortError):
        call(inst, flavor, "position")
    assert call(inst, flavor, "bus_stats")["stale"] == 1  # dropped with the old port
    faults.reconnect()
    port = manager.port(scripted_url)
    wait_until(lambda: port.is_connected, "the manager to reopen the port", timeout=5)
    assert call(inst, flavor, "position") == pytest.approx(22.5)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_port_lost_during_a_move_fails_the_wait_for_its_end(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str) -> None:
    url = bus_url("0:ELL14", speed_scale="0.25")
    inst = build(url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    call(inst, flavor, "move_absolute", 90)
    registry.endpoint(url).faults.disconnect()
    t0 = time.monotonic()
    with pytest.raises(ElliptecPortError) as err:
        call(inst, flavor, "wait_until_done", 5)
    assert time.monotonic() - t0 < 2.0
    assert err.value.command == "0ma00008C00"
