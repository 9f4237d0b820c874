"""The acme.tc1 driver, both flavors, against the simulated TC-1: data, commands, errors.

v4 actors are driven directly with ``asyncio.run``; the runtime is exercised in
``test_acme_lab.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from daqhub.instrument import DriverError
from daqhub.measurement import Scalar, UnifiedMeasurement
from daqhub.plugins.converters import batch_to_rows
from daqhub_sims.device import ManualClock

from daqhub_acme.driver import Tc1

Build = Callable[..., Any]  # the ``build`` fixture of conftest.py


def v4(coro: Any) -> Any:
    return asyncio.run(coro)


def rows_v2(inst: Any) -> list[tuple[str, Scalar]]:
    return [(m.channel, m.data) for m in inst.read()]


def rows_v4(actor: Any) -> list[tuple[str, Any]]:
    batches = v4(actor.read())
    return [(r.channel, r.data) for b in batches for r in batch_to_rows(b)]


# --- data and commands ----------------------------------------------------------------------

def test_v2_reads_both_channels_and_sets_the_setpoint(build: Build,
                                                      sim_url: Callable[..., str]) -> None:
    tc = build("v2", sim_url("acmetemp", serial="B7", tau=0))
    tc.connect()
    assert tc.session.identity == {"model": "TC-1", "serial": "B7", "firmware": "1.0"}
    assert rows_v2(tc) == [("temperature", Scalar(293.15, "K")), ("heater", Scalar(0.0, "%"))]
    tc.set_setpoint(77.0)
    assert tc.setpoint() == 77.0
    assert rows_v2(tc) == [("temperature", Scalar(77.0, "K")), ("heater", Scalar(0.0, "%"))]
    tc.close()


def test_v4_reads_both_channels_and_sets_the_setpoint(build: Build,
                                                      sim_url: Callable[..., str]) -> None:
    actor = build("v4", sim_url("acmetemp", tau=0))

    async def go() -> tuple[list[Any], float, list[Any]]:
        await actor.start()
        before = await actor.read()
        await actor.set_setpoint(400)
        return before, await actor.setpoint(), await actor.read()

    before, setpoint, after = v4(go())
    assert [(r.channel, r.data) for b in before for r in batch_to_rows(b)] == [
        ("temperature", Scalar(293.15, "K")), ("heater", Scalar(0.0, "%"))]
    assert setpoint == 400.0
    assert [(r.channel, r.data) for b in after for r in batch_to_rows(b)] == [
        ("temperature", Scalar(400.0, "K")), ("heater", Scalar(53.4, "%"))]


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_configured_setpoint_is_set_on_connect(flavor: str, build: Build,
                                               sim_url: Callable[..., str],
                                               sim_endpoint: Callable[[str], Any]) -> None:
    url = sim_url("acmetemp")
    tc = build(flavor, url, setpoint_k=10.5)
    if flavor == "v2":
        tc.connect()
    else:
        v4(tc.start())
    assert sim_endpoint(url).device.setpoint == 10.5


def test_flavors_give_the_same_data_for_the_same_sequence(
        build: Build, sim_url: Callable[..., str], sim_endpoint: Callable[..., Any]) -> None:
    """On device clocks that move only when told, so the approach is exactly repeatable."""
    def run(flavor: str) -> list[tuple[str, Any]]:
        url = sim_url("acmetemp", tau=4, noise=0.01, seed=3)
        clock = ManualClock()
        sim_endpoint(url, clock=clock)
        tc = build(flavor, url, instrument_id=f"tc_{flavor}")
        rows: list[tuple[str, Any]] = []
        if flavor == "v2":
            tc.connect()
            tc.set_setpoint(350.0)
            for _ in range(3):
                clock.advance(2.0)
                rows += rows_v2(tc)
            return rows

        async def go() -> None:
            await tc.start()
            await tc.set_setpoint(350.0)
            for _ in range(3):
                clock.advance(2.0)
                rows.extend((r.channel, r.data) for b in await tc.read() for r in batch_to_rows(b))
        v4(go())
        return rows

    a, b = run("v2"), run("v4")
    assert a == b
    temperatures = [d.value for ch, d in a if ch == "temperature"]
    assert 293.15 < temperatures[0] < temperatures[1] < temperatures[2] < 350.0


def test_works_through_a_real_pty(build: Build, sim_url: Callable[..., str],
                                  sim_pty: Callable[[str], str]) -> None:
    path = sim_pty(sim_url("acmetemp", serial="PTY1", tau=0))
    assert path.startswith("/dev/")
    tc = build("v2", path)
    tc.connect()
    assert tc.session.identity["serial"] == "PTY1"
    tc.set_setpoint(123.456)
    assert tc.setpoint() == 123.456
    assert rows_v2(tc)[0] == ("temperature", Scalar(123.456, "K"))
    actor = build("v4", path, instrument_id="tc4")  # same pty, shared port
    v4(actor.start())
    assert rows_v4(actor)[0] == ("temperature", Scalar(123.456, "K"))


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "code"), [
    ("FOO?", 1), ("SETP abc", 2), ("TEMP? 1", 2), ("SETP 999", 3), ("SETP " + "0" * 40, 4)])
def test_every_device_error_code_becomes_a_driver_error(
        command: str, code: int, build: Build, sim_url: Callable[..., str]) -> None:
    session = build("v2", sim_url("acmetemp"), instrument_id="tc7").session
    with pytest.raises(DriverError) as info:
        session.resource.transaction(lambda io: session.exchange(io, command, True), owner="tc7")
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("tc7", command, code)
    assert str(err).startswith(f"tc7: {command!r} [code {code}]: ")
    assert f"ERR {code} " in str(err)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_out_of_range_setpoint_is_refused_before_sending(
        flavor: str, build: Build, sim_url: Callable[..., str], sim_endpoint: Any) -> None:
    """The TC-1 answers ERR 3 outside 3-500 K (the README's protocol); the driver's declared
    range refuses it first, so ``daqhub validate`` finds ``["set_setpoint", 600]`` too
    (``test_acme_lab.py``); the TC-1's own ERR 3 is checked with every other error code."""
    url = sim_url("acmetemp")
    tc = build(flavor, url, instrument_id="cryo")
    for value in (600, 2.9, float("nan"), "300"):
        with pytest.raises(ValueError, match=r"^setpoint must be a (number from 3 to 500 K|"
                                             r"float), got "):
            if flavor == "v2":
                tc.set_setpoint(value)
            else:
                v4(tc.set_setpoint(value))
    assert sim_endpoint(url).device.setpoint == 293.15  # never sent: the power-on setpoint


@pytest.mark.timeout(10)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize("garbage", [b"\x00??\r\n", b"+29x.1\r\n", b"#" * 200, b"\xff\xfe\r\n"])
def test_garbage_raises_instead_of_hanging_and_the_next_read_recovers(
        flavor: str, garbage: bytes, build: Build, sim_url: Callable[..., str],
        sim_endpoint: Callable[[str], Any]) -> None:
    url = sim_url("acmetemp")
    tc = build(flavor, url, instrument_id="g")
    read = tc.read if flavor == "v2" else (lambda: v4(tc.read()))
    sim_endpoint(url).faults.inject_garbage(garbage)
    with pytest.raises(DriverError) as info:
        read()
    assert (info.value.instrument_id, info.value.command, info.value.code) == (
        "g", "TEMP?", "garbled")
    assert len(read()) == 2


@pytest.mark.timeout(10)
def test_truncated_reply_raises(build: Build, sim_url: Callable[..., str],
                                sim_endpoint: Callable[[str], Any]) -> None:
    url = sim_url("acmetemp")
    tc = build("v2", url, instrument_id="t")
    sim_endpoint(url).faults.truncate_next(3)
    with pytest.raises(DriverError, match=r"truncated reply .* got b'\+29'") as info:
        tc.read()
    assert (info.value.command, info.value.code) == ("TEMP?", "truncated")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_silence_is_a_bounded_timeout_naming_instrument_and_command(
        flavor: str, build: Build, sim_url: Callable[..., str],
        sim_endpoint: Callable[[str], Any]) -> None:
    url = sim_url("acmetemp")
    tc = build(flavor, url, instrument_id="slow")
    sim_endpoint(url).faults.latency = 3.0
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        if flavor == "v2":
            tc.setpoint()
        else:
            v4(tc.setpoint())
    assert time.monotonic() - t0 < 2.0
    err = info.value
    assert isinstance(err, DriverError)
    assert (err.instrument_id, err.command, err.code) == ("slow", "SETP?", "timeout")
    assert f"within {Tc1.read_timeout} s" in str(err)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_disconnect_raises_naming_instrument_and_command(
        flavor: str, build: Build, sim_url: Callable[..., str],
        sim_endpoint: Callable[[str], Any]) -> None:
    url = sim_url("acmetemp")
    tc = build(flavor, url, instrument_id="gone")
    sim_endpoint(url).faults.disconnect()
    with pytest.raises(DriverError) as info:
        if flavor == "v2":
            tc.read()
        else:
            v4(tc.read())
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("gone", "TEMP?; HEAT?", "disconnected")
    assert isinstance(err, ConnectionError)


def test_something_else_on_the_line_is_not_taken_for_a_tc1(
        build: Build, sim_url: Callable[..., str], sim_endpoint: Callable[[str], Any]) -> None:
    url = sim_url("acmetemp")
    tc = build("v2", url, instrument_id="who")
    sim_endpoint(url).faults.inject_garbage(b"KEITHLEY,2000,1,A\r\n")
    with pytest.raises(DriverError, match="not an ACME TC-1") as info:
        tc.connect()
    assert (info.value.command, info.value.code) == ("*IDN?", "identity")


def test_unified_rows_of_both_flavors_carry_the_declared_units(
        build: Build, sim_url: Callable[..., str]) -> None:
    url = sim_url("acmetemp")
    v2_rows = [UnifiedMeasurement.from_v2(m) for m in build("v2", url, "a").read()]
    actor = build("v4", url, "b")
    v4_rows = [r for b in v4(actor.read()) for r in batch_to_rows(b)]
    for rows in (v2_rows, v4_rows):
        assert {(r.channel, r.data.unit) for r in rows} == {("temperature", "K"), ("heater", "%")}
