"""The SCPI driver against the TCP SCPI simulator (pyvisa-py ``TCPIP::...::SOCKET``).

This simulator parses real SCPI (long/short forms, every standard error code) and
can spoil replies and drop the link, which pyvisa-sim cannot. Every fault must
end in a DriverError (or its timeout subclass) naming the instrument and the
command, within a bounded time, and the instrument must work again afterwards
where the link survived.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from daqhub.instrument import DriverError
from daqhub.measurement import Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub_scpi.protocol import ScpiDeviceError, ScpiTimeoutError

pytestmark = pytest.mark.timeout(15)

BACKEND = "@py"
READ = "MEAS:VOLT:DC?"  # what scpi.dmm sends for its voltage channel


def voltage(rows: list[Any]) -> float:
    (row,) = [r for r in rows if r.channel == "voltage"]
    assert isinstance(row.data, Scalar) and row.data.unit == "V"
    return float(row.data.value)


@pytest.fixture
def dmm_link(tcp_server, open_resource, build) -> tuple[Any, Any]:
    server = tcp_server("dmm", seed=1)
    dmm = build("v2", "scpi.dmm", open_resource(server.resource, BACKEND), "dmm")
    dmm.connect()
    return server, dmm


@pytest.fixture
def psu_link(tcp_server, open_resource, build) -> tuple[Any, Any]:
    server = tcp_server("psu", seed=1)
    psu = build("v2", "scpi.psu", open_resource(server.resource, BACKEND), "psu")
    psu.connect()
    return server, psu


def test_dmm_both_flavors_over_tcp(tcp_server, open_resource, build) -> None:
    server = tcp_server("dmm", seed=2)
    res = open_resource(server.resource, BACKEND)
    v2 = build("v2", "scpi.dmm", res, "dmm2", function=["VOLT:DC", "RES"])
    v4 = build("v4", "scpi.dmm", res, "dmm4", function="CURR:DC")
    v2.connect()
    assert v2.identify() == "SIM,DMM1,TCP0001,1.0"
    assert voltage(v2.read()) == pytest.approx(1.0, rel=1e-3)

    async def scenario() -> list[Any]:
        await v4.start()
        return await v4.read()

    rows = [r for b in asyncio.run(scenario()) for r in batch_to_rows(b)]
    assert [(r.channel, r.data.unit) for r in rows] == [("current", "A")]
    assert rows[0].data.value == pytest.approx(1e-3, rel=1e-3)


def test_session_opened_without_terminations(tcp_server, visa_manager, build) -> None:
    """The runtime opens a session with only the keys the lab block sets."""
    server = tcp_server("dmm")
    res = visa_manager.resource(server.resource, backend=BACKEND)
    v2 = build("v2", "scpi.dmm", res, "dmm")
    v4 = build("v4", "scpi.dmm", res, "dmm4")
    t0 = time.monotonic()
    v2.connect()
    assert v2.identify() == "SIM,DMM1,TCP0001,1.0"
    assert voltage(v2.read()) == pytest.approx(1.0, rel=1e-3)

    async def scenario() -> list[Any]:
        await v4.start()
        return await v4.read()

    assert voltage([r for b in asyncio.run(scenario()) for r in batch_to_rows(b)]) == \
        pytest.approx(1.0, rel=1e-3)
    assert time.monotonic() - t0 < 1.0  # no read waited for a terminator it never set


def test_psu_follows_its_load(psu_link) -> None:
    server, psu = psu_link
    psu.set_voltage(2.0)
    psu.set_current_limit(0.5)
    assert psu.voltage() == pytest.approx(0.0, abs=1e-3)  # output still off
    psu.set_output(True)
    assert psu.voltage() == pytest.approx(2.0, rel=1e-3)
    assert psu.current() == pytest.approx(0.2, rel=1e-3)  # 2 V into the sim's 10 ohm
    psu.set_voltage(7.5)  # 0.75 A wanted, limited to 0.5 A
    assert psu.current() == pytest.approx(0.5, rel=1e-3)
    with server.locked() as inst:
        assert inst.regulation_mode == "CC"


# (profile, how the driver is asked, command it sends, SCPI code the instrument queues)
ERROR_CASES = [
    ("psu", ("set_voltage", 31), "VOLT 31", -222),            # data out of range
    ("psu", ("set_current_limit", 3.5), "CURR 3.5", -222),
    ("psu", ("write", "VOLT abc"), "VOLT abc", -220),          # parameter error
    ("psu", ("write", "VOLT"), "VOLT", -109),                  # missing parameter
    ("psu", ("write", "*RST 1"), "*RST 1", -108),              # parameter not allowed
    ("psu", ("write", "VOLT 1,,2"), "VOLT 1,,2", -102),        # syntax error
    ("psu", ("write", "MEAS:VOLT"), "MEAS:VOLT", -100),        # query-only header as command
    ("dmm", ("write", "FROB 1"), "FROB 1", -113),              # undefined header
    ("dmm", ("query", "*RST?"), "*RST?", -100),                # command-only header as query
    ("dmm", ("query", "FETC?"), "FETC?", -230),                # no reading in memory yet
    ("dmm", ("query", "MEAS:FREQ?"), "MEAS:FREQ?", -113),
]


@pytest.mark.parametrize("profile, call, command, code", ERROR_CASES,
                         ids=[c[2] for c in ERROR_CASES])
def test_scpi_error_codes_are_reported_against_their_command(
        tcp_server, open_resource, build, profile: str, call: tuple[str, Any], command: str,
        code: int) -> None:
    server = tcp_server(profile)
    inst = build("v2", f"scpi.{profile}", open_resource(server.resource, BACKEND), "unit")
    inst.connect()
    method, arg = call
    t0 = time.monotonic()
    with pytest.raises(ScpiDeviceError) as info:
        getattr(inst, method)(arg)
    assert time.monotonic() - t0 < 2.0
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("unit", command, code)
    assert str(code) in str(err) and command in str(err) and "unit" in str(err)
    with server.locked() as sim:
        assert sim.errors == []  # drained: nothing left to blame on the next command
    assert inst.query("*OPC?") == "1"  # and the link is in step


def test_error_queue_overflow_is_read_back(tcp_server, open_resource, build) -> None:
    server = tcp_server("dmm")
    dmm = build("v2", "scpi.dmm", open_resource(server.resource, BACKEND), "dmm",
                check_errors=False)
    dmm.connect()
    for _ in range(25):
        dmm.write("FROB")
    errors = dmm.errors()
    assert [code for code, _ in errors] == [-113] * 19 + [-350]
    assert errors[-1] == (-350, "Queue overflow")


def test_garbage_reply(dmm_link) -> None:
    server, dmm = dmm_link
    server.garbage_next_reply()
    with pytest.raises(DriverError) as info:
        dmm.read()
    assert (info.value.instrument_id, info.value.command) == ("dmm", READ)
    assert "unexpected reply '#~?GARBAGE,@@,!!'" in str(info.value)
    assert voltage(dmm.read()) == pytest.approx(1.0, rel=1e-3)


def test_garbage_instead_of_the_error_queue_reply(dmm_link) -> None:
    server, dmm = dmm_link
    server.garbage_next_reply(b"\x00\xff garbled")
    with pytest.raises(DriverError) as info:
        dmm.write("CONF:RES")  # no reply of its own: the garbage replaces SYST:ERR?'s
    assert (info.value.instrument_id, info.value.command) == ("dmm", "CONF:RES")
    assert "SYST:ERR?" in str(info.value) and "unexpected reply" in str(info.value)
    assert dmm.query("CONF?") == '"RES"'


def test_truncated_reply_without_terminator(dmm_link) -> None:
    server, dmm = dmm_link
    server.truncate_next_reply(5)  # "+1.00" and the link goes quiet
    t0 = time.monotonic()
    # pyvisa-py reports a partial reply on a socket as a timeout (and drops the bytes)
    with pytest.raises(ScpiTimeoutError) as info:
        dmm.read()
    assert time.monotonic() - t0 < 2.0
    assert (info.value.instrument_id, info.value.command) == ("dmm", READ)
    assert "no complete reply within 300 ms" in str(info.value)
    assert voltage(dmm.read()) == pytest.approx(1.0, rel=1e-3)


def test_truncated_reply_with_terminator(dmm_link) -> None:
    server, dmm = dmm_link
    server.truncate_next_reply(11, terminate=True)  # "+1.000012E+" then "\n"
    with pytest.raises(DriverError) as info:
        dmm.read()
    assert (info.value.instrument_id, info.value.command) == ("dmm", READ)
    assert "unexpected reply '+1." in str(info.value)
    assert voltage(dmm.read()) == pytest.approx(1.0, rel=1e-3)


def test_timeout_when_the_reply_never_comes(dmm_link) -> None:
    server, dmm = dmm_link
    server.drop_next_reply()
    t0 = time.monotonic()
    with pytest.raises(ScpiTimeoutError) as info:
        dmm.read()
    assert time.monotonic() - t0 < 2.0
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, DriverError)
    assert (err.instrument_id, err.command) == ("dmm", READ)
    assert "no complete reply within 300 ms" in str(err)
    assert f"dmm held TCPIP0::127.0.0.1::{server.port}::SOCKET" in str(err)
    assert voltage(dmm.read()) == pytest.approx(1.0, rel=1e-3)


def test_timeout_of_the_error_check(dmm_link) -> None:
    server, dmm = dmm_link
    server.drop_next_reply()  # CONF:RES has no reply: the SYST:ERR? answer is lost
    with pytest.raises(ScpiTimeoutError) as info:
        dmm.write("CONF:RES")
    assert (info.value.instrument_id, info.value.command) == ("dmm", "CONF:RES")
    assert "checking the error queue after it: no complete reply" in str(info.value)
    assert dmm.query("CONF?") == '"RES"'


def test_a_late_reply_is_never_taken_for_the_next_one(psu_link) -> None:
    server, psu = psu_link
    psu.set_voltage(1.0)
    server.latency = 0.5  # longer than the 300 ms timeout
    with pytest.raises(ScpiTimeoutError) as info:
        psu.query("VOLT?")
    assert info.value.command == "VOLT?"
    server.latency = 0.0
    # the late "+1.000000E+00" (and anything queued behind it) must not answer these
    deadline = time.monotonic() + 5.0
    while True:
        try:
            psu.set_voltage(2.0)
            break
        except DriverError:
            assert time.monotonic() < deadline, "never got back in step"
    assert psu.query("VOLT?") == "+2.000000E+00"
    assert psu.query("*IDN?") == "SIM,PSU1,TCP0002,1.0"
    assert psu.query("OUTP?") == "0"


@pytest.mark.parametrize("check_errors", ["always", "never"])
def test_a_late_identification_is_never_taken_for_the_next_reply(
        tcp_server, open_resource, build, check_errors: str) -> None:
    """``identify(refresh=True)`` used to ask through the VISA manager's cache, which did
    not put the session out of step when it timed out: every later query then read the
    reply to the one before it (``check_errors = "never"``: silently)."""
    server = tcp_server("psu", seed=1)
    psu = build("v2", "scpi.psu", open_resource(server.resource, BACKEND), "psu",
                check_errors=check_errors)
    psu.connect()
    psu.set_voltage(1.5)
    server.latency = 0.5  # longer than the 300 ms timeout
    with pytest.raises(ScpiTimeoutError, match=r"psu: '\*IDN\?': no complete reply within 300"):
        psu.identify(refresh=True)
    server.latency = 0.0
    deadline = time.monotonic() + 5.0
    while True:  # refused until back in step; never answered with another query's reply
        try:
            assert psu.query("VOLT?") == "+1.500000E+00"
            break
        except DriverError:
            assert time.monotonic() < deadline, "never got back in step"
    assert psu.query("OUTP?") == "0"
    assert psu.identify() == "SIM,PSU1,TCP0002,1.0"


def test_disconnect_gives_errors_not_hangs(dmm_link) -> None:
    server, dmm = dmm_link
    server.disconnect()
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(DriverError) as info:
            dmm.read()
        assert time.monotonic() - t0 < 3.0
        assert (info.value.instrument_id, info.value.command) == ("dmm", READ)


def test_disconnect_under_the_v4_actor(tcp_server, open_resource, build) -> None:
    server = tcp_server("psu")
    psu = build("v4", "scpi.psu", open_resource(server.resource, BACKEND), "psu4")

    async def scenario() -> list[DriverError]:
        await psu.start()
        await psu.set_voltage(1.0)
        server.disconnect()
        errors = []
        for call in (psu.read, psu.voltage, lambda: psu.set_output(True)):
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(call(), timeout=5.0)
            except DriverError as exc:
                errors.append(exc)
            assert time.monotonic() - t0 < 3.0
        return errors

    errors = asyncio.run(scenario())
    assert len(errors) == 3
    assert all(e.instrument_id == "psu4" for e in errors)
    assert [e.command for e in errors] == ["MEAS:VOLT?", "MEAS:VOLT?", "OUTP 1"]
