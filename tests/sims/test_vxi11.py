"""The VXI-11 simulator as pyvisa-py (``TCPIP::host::INSTR``) and a bare ONC RPC client see it."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
import pyvisa
from pyvisa.errors import VisaIOError

from daqhub_sims.vxi11 import (
    CORE_PROG,
    CREATE_LINK,
    ERR_INVALID_LINK,
    ERR_NOT_ACCESSIBLE,
    LAST_FRAGMENT,
    PROG_UNAVAIL,
    Vxi11Server,
    opaque,
    read_record,
    serve_on_loopback,
    u32s,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server() -> Iterator[Vxi11Server]:
    started = serve_on_loopback("dmm", seed=1)
    if started is None:
        pytest.skip("port 111 cannot be bound on any loopback address here (needs root)")
    with started:
        yield started


def call(port: int, host: str, prog: int, vers: int, proc: int, args: bytes) -> list[int]:
    """One RPC call (AUTH_NONE); the reply's 32-bit words after the xid."""
    body = u32s(7, 0, 2, prog, vers, proc, 0, 0, 0, 0) + args
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(u32s(LAST_FRAGMENT | len(body)) + body)
        reply = read_record(s)
    assert reply is not None
    words = list(struct.unpack(f">{len(reply) // 4}I", reply[:len(reply) // 4 * 4]))
    assert words[:2] == [7, 1]  # our xid, a REPLY
    return words[2:]


def test_pyvisa_opens_queries_and_closes_an_instr_resource(server: Vxi11Server) -> None:
    rm = pyvisa.ResourceManager("@py")
    try:
        inst = rm.open_resource(server.resource, timeout=2000, read_termination="\n",
                                write_termination="\n")
        assert inst.query("*IDN?") == "SIM,DMM1,TCP0001,1.0"
        inst.write("*CLS")  # no reply: the next query gets its own
        assert inst.query("READ?").startswith(("+", "-"))  # an NR3 reading
        inst.timeout = 200
        with pytest.raises(VisaIOError):
            inst.read()  # nothing asked: an I/O timeout, not a stale reply
        inst.close()
    finally:
        rm.close()


def test_the_instrument_goes_off_the_network_and_back_on_the_same_ports(
        server: Vxi11Server) -> None:
    rm = pyvisa.ResourceManager("@py")
    try:
        port = server.core_port
        server.disconnect()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, 111), timeout=2).close()
        server.reconnect()
        assert server.core_port == port
        inst = rm.open_resource(server.resource, timeout=2000, read_termination="\n",
                                write_termination="\n")
        assert inst.query("*IDN?").startswith("SIM,DMM1")
        inst.close()
    finally:
        rm.close()


def test_bad_calls_get_the_specified_errors(server: Vxi11Server) -> None:
    # portmapper GETPORT: the core channel's port for TCP, 0 for anything not served
    assert call(111, server.host, 100000, 2, 3, u32s(CORE_PROG, 1, 6, 0))[-1] == server.core_port
    assert call(111, server.host, 100000, 2, 3, u32s(CORE_PROG, 1, 17, 0))[-1] == 0
    # a program nobody serves here: accepted, PROG_UNAVAIL
    assert call(server.core_port, server.host, 100003, 3, 0, b"")[-1] == PROG_UNAVAIL
    # create_link to a device that does not exist; device_read on a link never made
    link = call(server.core_port, server.host, CORE_PROG, 1, CREATE_LINK,
                u32s(1, 0, 0) + opaque(b"gpib0,5"))
    assert link[4] == ERR_NOT_ACCESSIBLE
    read = call(server.core_port, server.host, CORE_PROG, 1, 12, u32s(99, 100, 100, 0, 0, 0))
    assert read[4] == ERR_INVALID_LINK
