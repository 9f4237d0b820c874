"""The SCPI TCP simulator, as a pyvisa-py client (``@py``, raw SOCKET) sees it."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import pytest
import pyvisa
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError
from pyvisa.resources import MessageBasedResource

from daqhub_sims.scpi import ScpiDmm, ScpiPsu, make_instrument
from daqhub_sims.scpi_tcp import DEFAULT_GARBAGE, ScpiTcpServer

pytestmark = pytest.mark.timeout(20)

NR3 = re.compile(r"[+-]\d\.\d{6}E[+-]\d{2}")
NO_ERROR = '+0,"No error"'
DMM_IDN = "SIM,DMM1,TCP0001,1.0"
PSU_IDN = "SIM,PSU1,TCP0002,1.0"
# Generous for replies that must come (a loaded CI box), short where a test expects none.
TIMEOUT_MS = 2000
EXPECTED_TIMEOUT_MS = 150


@pytest.fixture
def rm() -> Iterator[pyvisa.ResourceManager]:
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


@pytest.fixture
def dmm_server() -> Iterator[ScpiTcpServer]:
    with ScpiTcpServer("dmm") as server:
        yield server


@pytest.fixture
def psu_server() -> Iterator[ScpiTcpServer]:
    with ScpiTcpServer("psu") as server:
        yield server


def connect(
    rm: pyvisa.ResourceManager, server: ScpiTcpServer, timeout_ms: int = TIMEOUT_MS
) -> MessageBasedResource:
    session = rm.open_resource(
        server.resource, read_termination="\n", write_termination="\n", timeout=timeout_ms
    )
    assert isinstance(session, MessageBasedResource)
    return session


@pytest.fixture
def dmm(rm: pyvisa.ResourceManager, dmm_server: ScpiTcpServer) -> MessageBasedResource:
    return connect(rm, dmm_server)


@pytest.fixture
def psu(rm: pyvisa.ResourceManager, psu_server: ScpiTcpServer) -> MessageBasedResource:
    return connect(rm, psu_server)


def number(reply: str) -> float:
    assert NR3.fullmatch(reply), f"{reply!r} is not in the +d.ddddddE+dd format"
    return float(reply)


def errors(session: MessageBasedResource) -> list[str]:
    """Drain the error queue, as a driver does after a command."""
    found: list[str] = []
    for _ in range(30):
        entry = session.query("SYST:ERR?")
        if entry == NO_ERROR:
            return found
        found.append(entry)
    raise AssertionError(f"error queue did not empty: {found}")


def assert_times_out(session: MessageBasedResource, query: str) -> None:
    previous, session.timeout = session.timeout, EXPECTED_TIMEOUT_MS
    try:
        with pytest.raises(VisaIOError) as caught:
            session.query(query)
    finally:
        session.timeout = previous
    assert caught.value.error_code == StatusCode.error_timeout


# --- identity, resource name, common commands ---


def test_resource_names_a_pyvisa_py_socket(dmm_server: ScpiTcpServer) -> None:
    assert dmm_server.port > 0
    assert dmm_server.resource == f"TCPIP::127.0.0.1::{dmm_server.port}::SOCKET"


@pytest.mark.parametrize(("profile", "idn"), [("dmm", DMM_IDN), ("psu", PSU_IDN)])
def test_common_commands(rm: pyvisa.ResourceManager, profile: str, idn: str) -> None:
    with ScpiTcpServer(profile) as server:
        session = connect(rm, server)
        assert session.query("*IDN?") == idn
        assert session.query("*OPC?") == "1"
        assert session.query("*TST?") == "0"
        assert session.query("SYST:VERS?") == "1999.0"
        for command in ("*RST", "*CLS", "*WAI", "SYST:REM", "SYST:LOC"):
            session.write(command)
        assert session.query("*ESR?") == "0"
        session.write("*OPC")
        assert session.query("*ESR?") == "1"
        session.write("*ESE 36;*SRE 32")
        assert session.query("*ESE?;*SRE?") == "36;32"
        assert session.query("SYST:ERR?") == NO_ERROR


def test_status_byte_follows_the_error_queue_and_event_register(
    dmm: MessageBasedResource,
) -> None:
    assert dmm.query("*STB?") == "0"
    dmm.write("*ESE 32;*SRE 32")
    dmm.write("BOGUS")
    assert dmm.query("*STB?") == str(4 | 32 | 64)  # EAV, ESB (command error enabled), MSS
    dmm.write("*CLS")
    assert dmm.query("*STB?") == "0"


# --- the SCPI parser ---


@pytest.mark.parametrize(
    "spelling",
    [
        "MEAS:VOLT:DC?",
        "MEASure:VOLTage:DC?",
        "MEASURE:VOLTAGE:DC?",
        "measure:voltage:dc?",
        "Meas:Volt?",
        ":MEAS:SCAL:VOLT:DC?",
        "MEASURE:SCALAR:VOLTAGE?",
    ],
)
def test_short_and_long_forms_in_any_case_are_one_command(
    dmm: MessageBasedResource, spelling: str
) -> None:
    assert number(dmm.query(spelling)) == pytest.approx(1.0, rel=1e-3)
    assert errors(dmm) == []


@pytest.mark.parametrize("spelling", ["MEASU:VOLT?", "MEAS:VOLTA?", "MEA:VOLT?", "MEAS:VOLT:AC?"])
def test_keywords_between_short_and_long_form_are_undefined(
    dmm: MessageBasedResource, spelling: str
) -> None:
    dmm.write(spelling)  # a failed query gives no reply
    assert errors(dmm) == ['-113,"Undefined header"']


@pytest.mark.parametrize(
    ("message", "entry"),
    [
        ("FOO:BAR", '-113,"Undefined header"'),
        ("VOLT$ 1", '-102,"Syntax error"'),
        ("VOLT 1,,2", '-102,"Syntax error"'),
        ('OUTP "unterminated', '-102,"Syntax error"'),
        ("MEAS:VOLT", '-100,"Command error"'),
        ("*RST?", '-100,"Command error"'),
        ("*IDN? 1", '-108,"Parameter not allowed"'),
        ("OUTP ON,OFF", '-108,"Parameter not allowed"'),
        ("VOLT", '-109,"Missing parameter"'),
        ("VOLT abc", '-220,"Parameter error"'),
        ("OUTP MAYBE", '-220,"Parameter error"'),
        ("VOLT 30.01", '-222,"Data out of range"'),
        ("CURR -0.1", '-222,"Data out of range"'),
    ],
)
def test_bad_messages_queue_the_standard_error(
    psu: MessageBasedResource, message: str, entry: str
) -> None:
    psu.write(message)
    assert errors(psu) == [entry]


def test_event_status_register_classifies_errors(psu: MessageBasedResource) -> None:
    psu.write("BOGUS")
    assert psu.query("*ESR?") == "32"  # command error
    psu.write("VOLT 99")
    assert psu.query("*ESR?") == "16"  # execution error
    assert psu.query("*ESR?") == "0"
    assert psu.query("SYST:ERR:COUN?") == "2"
    psu.write("*CLS")
    assert psu.query("SYST:ERR:COUN?") == "0"


def test_error_queue_overflow_keeps_the_oldest_and_ends_with_350(
    psu: MessageBasedResource,
) -> None:
    for _ in range(25):
        psu.write("BOGUS")
    psu.write("VOLT 99")  # lost: the queue is full
    assert psu.query("SYST:ERR:COUN?") == "20"
    assert errors(psu) == ['-113,"Undefined header"'] * 19 + ['-350,"Queue overflow"']


def test_compound_message_replies_are_joined_with_semicolons(psu: MessageBasedResource) -> None:
    psu.write("VOLT 5;CURR 0.2;OUTP ON")
    assert psu.query("VOLT?;CURR?;OUTP?") == "+5.000000E+00;+2.000000E-01;1"
    assert psu.query("*IDN?;*OPC?") == f"{PSU_IDN};1"


def test_compound_headers_continue_from_the_previous_node(psu: MessageBasedResource) -> None:
    psu.write("SOUR:VOLT 2;CURR 0.3;:OUTP ON")  # CURR means SOUR:CURR
    assert psu.query("APPL?") == '"+2.000000E+00,+3.000000E-01"'
    volts, amps = (number(r) for r in psu.query("MEAS:VOLT?;CURR?").split(";"))  # MEAS:CURR?
    assert (volts, amps) == (pytest.approx(2.0, rel=1e-3), pytest.approx(0.2, rel=1e-3))
    assert errors(psu) == []


def test_command_error_discards_the_rest_of_the_message(psu: MessageBasedResource) -> None:
    psu.write("VOLT 1;BOGUS;VOLT 2")
    assert number(psu.query("VOLT?")) == 1.0
    assert errors(psu) == ['-113,"Undefined header"']


def test_execution_error_skips_only_its_own_unit(psu: MessageBasedResource) -> None:
    psu.write("VOLT 99;CURR 0.5")
    assert psu.query("VOLT?;CURR?") == "+0.000000E+00;+5.000000E-01"
    assert errors(psu) == ['-222,"Data out of range"']


def test_reset_restores_defaults_but_keeps_the_error_queue(psu: MessageBasedResource) -> None:
    psu.write("VOLT 12;CURR 2;OUTP ON;BOGUS")
    psu.write("*RST")
    assert psu.query("VOLT?;CURR?;OUTP?") == "+0.000000E+00;+1.000000E+00;0"
    assert errors(psu) == ['-113,"Undefined header"']


# --- power supply ---


@pytest.mark.parametrize("form", ["5", "+5", "5.0", "5.", "5e0", "0.5E1", "MAX", "MIN", "DEF"])
def test_psu_number_forms(psu: MessageBasedResource, form: str) -> None:
    psu.write(f"VOLT {form}")
    expected = {"MAX": 30.0, "MIN": 0.0, "DEF": 0.0}.get(form, 5.0)
    assert number(psu.query("VOLT?")) == expected
    assert errors(psu) == []


def test_psu_limits(psu: MessageBasedResource) -> None:
    assert psu.query("VOLT? MAX;VOLT? MIN;CURR? MAX;CURR? MIN") == (
        "+3.000000E+01;+0.000000E+00;+3.000000E+00;+0.000000E+00"
    )
    psu.write("VOLTage:LEVel:IMMediate:AMPLitude 30;CURR 3")
    assert psu.query("VOLT?;CURR?") == "+3.000000E+01;+3.000000E+00"
    psu.write("APPL 31,1")
    assert errors(psu) == ['-222,"Data out of range"']
    assert psu.query("APPL?") == '"+3.000000E+01,+3.000000E+00"', "a refused APPL changes nothing"


@pytest.mark.parametrize(("word", "state"), [("ON", "1"), ("1", "1"), ("OFF", "0"), ("0", "0")])
def test_psu_output_accepts_scpi_booleans(
    psu: MessageBasedResource, word: str, state: str
) -> None:
    psu.write("OUTP " + ("OFF" if state == "1" else "ON"))
    psu.write(f"OUTPut:STATe {word}")
    assert psu.query("OUTP?") == state


def test_psu_output_off_measures_nothing(psu: MessageBasedResource) -> None:
    psu.write("VOLT 5")
    assert number(psu.query("MEAS:VOLT?")) == pytest.approx(0.0, abs=1e-3)
    assert number(psu.query("MEAS:CURR?")) == pytest.approx(0.0, abs=1e-3)


def test_psu_load_model_constant_voltage_then_constant_current(
    psu_server: ScpiTcpServer, psu: MessageBasedResource
) -> None:
    psu.write("VOLT 5;CURR 1;OUTP ON")  # 10 ohm default load: 0.5 A, within the limit
    assert number(psu.query("MEAS:VOLT?")) == pytest.approx(5.0, rel=1e-3)
    assert number(psu.query("MEAS:CURR?")) == pytest.approx(0.5, rel=1e-3)
    psu.write("CURR 0.2")  # the load would draw 0.5 A: the supply limits the current
    assert number(psu.query("MEAS:CURR?")) == pytest.approx(0.2, rel=1e-3)
    assert number(psu.query("MEAS:VOLT?")) == pytest.approx(2.0, rel=1e-3)
    with psu_server.locked() as instrument:
        assert isinstance(instrument, ScpiPsu)
        assert instrument.regulation_mode == "CC"
        instrument.load_ohms = 100.0
        assert instrument.regulation_mode == "CV"
    assert number(psu.query("MEAS:CURR?")) == pytest.approx(0.05, rel=1e-3)
    assert number(psu.query("MEAS:VOLT?")) == pytest.approx(5.0, rel=1e-3)


# --- DMM ---


@pytest.mark.parametrize(
    ("function", "nominal"), [("VOLT:DC", 1.0), ("CURR:DC", 1e-3), ("RES", 1e3)]
)
def test_dmm_configure_then_read_and_fetch(
    dmm: MessageBasedResource, function: str, nominal: float
) -> None:
    dmm.write(f"CONF:{function}")
    assert dmm.query("CONF?") == f'"{function}"'
    reading = number(dmm.query("READ?"))
    assert reading == pytest.approx(nominal, rel=1e-3)
    assert number(dmm.query("FETC?")) == reading, "FETC? returns the last reading again"
    assert number(dmm.query(f"MEAS:{function}?")) == pytest.approx(nominal, rel=1e-3)
    assert errors(dmm) == []


def test_dmm_function_selection_by_quoted_name(dmm: MessageBasedResource) -> None:
    dmm.write('SENS:FUNC "CURRent"')
    assert dmm.query("FUNC?") == '"CURR:DC"'
    dmm.write("FUNC 'res'")
    assert dmm.query("FUNC?") == '"RES"'
    dmm.write('FUNC "FREQ"')
    dmm.write("FUNC RES")
    assert errors(dmm) == ['-220,"Parameter error"'] * 2


def test_dmm_fetch_without_a_reading_is_stale(dmm: MessageBasedResource) -> None:
    dmm.write("CONF:VOLT")
    assert_times_out(dmm, "FETC?")
    assert errors(dmm) == ['-230,"Data corrupt or stale"']
    dmm.write("INIT")
    assert number(dmm.query("FETC?")) == pytest.approx(1.0, rel=1e-3)


def test_dmm_sample_count_gives_several_readings(dmm: MessageBasedResource) -> None:
    dmm.write("SAMP:COUN 5")
    values = [number(v) for v in dmm.query("READ?").split(",")]
    assert len(values) == 5
    assert all(v == pytest.approx(1.0, rel=1e-3) for v in values)
    dmm.write("SAMP:COUN 2.5;SAMP:COUN 0")
    assert errors(dmm) == ['-222,"Data out of range"'] * 2


def test_dmm_range_too_small_reads_overload(
    dmm_server: ScpiTcpServer, dmm: MessageBasedResource
) -> None:
    assert number(dmm.query("VOLT:RANG?")) == 1.0  # autorange for the 1 V input
    dmm.write("VOLT:RANG 0.1")
    assert number(dmm.query("READ?")) == 9.9e37
    dmm.write("CONF:VOLT:DC AUTO")
    assert number(dmm.query("READ?")) == pytest.approx(1.0, rel=1e-3)
    dmm.write("CONF:VOLT:DC 10,MAX")
    assert number(dmm.query("VOLT:DC:RANG?")) == 10.0
    with dmm_server.locked() as instrument:
        assert isinstance(instrument, ScpiDmm)
        instrument.inputs["VOLT:DC"] = 11.5
    assert number(dmm.query("READ?")) == pytest.approx(11.5, rel=1e-3)
    assert_times_out(dmm, "MEAS:VOLT:DC? 2000")
    assert errors(dmm) == ['-222,"Data out of range"']


def test_dmm_noise_is_seeded(rm: pyvisa.ResourceManager) -> None:
    def readings(seed: int) -> list[float]:
        with ScpiTcpServer("dmm", seed=seed) as server:
            session = connect(rm, server)
            values = [number(session.query("READ?")) for _ in range(10)]
            session.close()
            return values

    first, again, other = readings(1), readings(1), readings(2)
    assert first == again
    assert first != other
    assert len(set(first)) > 5, "readings should carry noise"
    assert all(v == pytest.approx(1.0, rel=2e-4) for v in first)


def test_make_instrument_names_the_profiles() -> None:
    assert isinstance(make_instrument("psu"), ScpiPsu)
    with pytest.raises(ValueError, match=r"unknown SCPI profile 'scope'.*\['dmm', 'psu'\]"):
        make_instrument("scope")


# --- several clients ---


def test_concurrent_clients_each_get_their_own_replies(
    rm: pyvisa.ResourceManager, psu_server: ScpiTcpServer
) -> None:
    queries = {"*IDN?": PSU_IDN, "*OPC?": "1", "SYST:VERS?": "1999.0", "*TST?": "0"}
    sessions = [connect(rm, psu_server) for _ in queries]
    psu_server.wait_for_clients(len(queries))
    wrong: list[tuple[str, str]] = []

    def worker(session: MessageBasedResource, query: str, expected: str) -> None:
        for _ in range(100):
            got = session.query(query)
            if got != expected:
                wrong.append((expected, got))

    threads = [
        threading.Thread(target=worker, args=(s, q, r))
        for s, (q, r) in zip(sessions, queries.items(), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []


def test_clients_share_one_instrument(
    rm: pyvisa.ResourceManager, psu_server: ScpiTcpServer
) -> None:
    first, second = connect(rm, psu_server), connect(rm, psu_server)
    first.write("VOLT 7.5")
    # a write returns once sent; *OPC? on the same connection waits until it is processed
    # (each connection has its own server thread, so without it the other could read first)
    assert first.query("*OPC?") == "1"
    assert second.query("VOLT?") == "+7.500000E+00"


# --- fault knobs ---


def test_latency_delays_every_reply(dmm_server: ScpiTcpServer, rm: pyvisa.ResourceManager) -> None:
    session = connect(rm, dmm_server)
    dmm_server.latency = 0.25
    start = time.monotonic()
    assert session.query("*OPC?") == "1"
    assert session.query("*OPC?") == "1"
    assert time.monotonic() - start >= 0.5
    dmm_server.latency = 0.0
    start = time.monotonic()
    assert session.query("*OPC?") == "1"
    assert time.monotonic() - start < 0.25
    with pytest.raises(ValueError, match="latency must be >= 0"):
        dmm_server.latency = -1


def test_latency_beyond_the_timeout_leaves_a_stale_reply(
    dmm_server: ScpiTcpServer, dmm: MessageBasedResource
) -> None:
    dmm_server.latency = 0.3
    assert_times_out(dmm, "*IDN?")
    dmm_server.latency = 0.0
    # The late reply still arrives and is read by whoever reads next.
    assert dmm.query("*OPC?") == DMM_IDN
    assert dmm.read() == "1"


def test_dropped_reply_times_out_and_the_next_one_is_clean(
    dmm_server: ScpiTcpServer, dmm: MessageBasedResource
) -> None:
    dmm_server.drop_next_reply()
    assert dmm_server.pending_faults == 1
    assert_times_out(dmm, "*IDN?")
    assert dmm_server.pending_faults == 0
    assert dmm.query("*OPC?") == "1"


def test_garbage_reply_is_what_the_client_reads(
    dmm_server: ScpiTcpServer, dmm: MessageBasedResource
) -> None:
    dmm_server.garbage_next_reply()
    assert dmm.query("MEAS:VOLT?") == DEFAULT_GARBAGE.decode()
    dmm_server.garbage_next_reply(b"+1.0E+00 volts")
    with pytest.raises(ValueError):
        float(dmm.query("MEAS:VOLT?"))
    dmm_server.garbage_next_reply(b"\xff\xfe\x00")
    with pytest.raises(UnicodeDecodeError):
        dmm.query("*IDN?")
    dmm_server.garbage_next_reply(b"no terminator", terminate=False)
    assert_times_out(dmm, "*IDN?")
    # pyvisa-py drops what it got before the timeout; bytes that arrive after it
    # (a slow machine) are glued in front of the next reply.
    assert dmm.query("*IDN?").endswith(DMM_IDN)


def test_truncated_reply(dmm_server: ScpiTcpServer, dmm: MessageBasedResource) -> None:
    dmm_server.truncate_next_reply(5)
    assert_times_out(dmm, "*IDN?")  # no terminator ever comes
    # Usually pyvisa-py discarded the partial bytes with the timeout; if they came
    # in after it, the next reply starts with them.
    assert dmm.query("*IDN?") in (DMM_IDN, DMM_IDN[:5] + DMM_IDN)
    dmm_server.truncate_next_reply(5, terminate=True)
    assert dmm.query("*IDN?") == DMM_IDN[:5]
    with pytest.raises(ValueError, match="cannot truncate"):
        dmm_server.truncate_next_reply(-1)


def test_one_shot_faults_fire_in_order_then_stop(
    dmm_server: ScpiTcpServer, dmm: MessageBasedResource
) -> None:
    dmm_server.drop_next_reply()
    dmm_server.garbage_next_reply(b"junk")
    dmm_server.truncate_next_reply(3, terminate=True)
    assert_times_out(dmm, "*OPC?")
    assert dmm.query("*OPC?") == "junk"
    assert dmm.query("*IDN?") == "SIM"
    assert dmm.query("*IDN?") == DMM_IDN
    dmm_server.drop_next_reply()
    dmm_server.clear_faults()
    assert dmm.query("*OPC?") == "1"


def test_a_command_without_reply_does_not_consume_a_fault(
    dmm_server: ScpiTcpServer, dmm: MessageBasedResource
) -> None:
    dmm_server.garbage_next_reply(b"junk")
    dmm.write("*CLS")
    assert dmm_server.pending_faults == 1
    assert dmm.query("*OPC?") == "junk"


def test_disconnect_then_reconnect(
    dmm_server: ScpiTcpServer, rm: pyvisa.ResourceManager
) -> None:
    session = connect(rm, dmm_server, timeout_ms=EXPECTED_TIMEOUT_MS)
    session.write("CONF:RES")
    dmm_server.wait_for_clients(1)
    dmm_server.disconnect()
    assert not dmm_server.connected
    assert dmm_server.client_count == 0
    # The open session is dead. pyvisa-py 0.8.1 first times out (its write still
    # succeeds), then raises BrokenPipeError: drivers must expect both.
    for _ in range(2):
        with pytest.raises((VisaIOError, OSError)):
            session.query("*IDN?")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", dmm_server.port), timeout=1).close()
    with pytest.raises((VisaIOError, OSError)):
        # pyvisa-py "opens" without connecting; the refusal shows at the first write
        connect(rm, dmm_server).query("*IDN?")

    dmm_server.reconnect()
    assert dmm_server.connected
    with pytest.raises((VisaIOError, OSError)):
        session.query("*IDN?")  # an old session does not come back by itself
    session.close()
    fresh = connect(rm, dmm_server)
    assert fresh.query("*IDN?") == DMM_IDN
    assert fresh.query("CONF?") == '"RES"', "the instrument keeps its settings"


# --- lifecycle and command line ---


def _server_threads(port: int) -> list[str]:
    """Names of the server's threads: scpi-tcp-accept-PORT, scpi-tcp-client-PORT-PEER."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("scpi-tcp-") and t.name.split("-")[3] == str(port)
    ]


def test_close_ends_every_thread_and_frees_the_port(rm: pyvisa.ResourceManager) -> None:
    server = ScpiTcpServer("psu").start()
    port = server.port
    sessions = [connect(rm, server) for _ in range(3)]
    server.wait_for_clients(3)
    assert len(_server_threads(port)) == 4  # acceptor + one per client
    server.latency = 5.0  # a reply in its latency wait must not hold up close()
    sessions[0].write("*IDN?")
    start = time.monotonic()
    server.close()
    assert time.monotonic() - start < 1.5
    assert _server_threads(port) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_port_is_only_known_once_started() -> None:
    server = ScpiTcpServer("dmm")
    with pytest.raises(RuntimeError, match="no port until start"):
        _ = server.resource


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the simulator printed nothing within {timeout} s")
    return stream.readline().strip()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_line_serves_until_signalled(
    rm: pyvisa.ResourceManager, stop_signal: signal.Signals
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daqhub_sims.scpi_tcp", "--profile", "psu", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        resource = _read_line(proc.stdout, timeout=10)
        assert re.fullmatch(r"TCPIP::127\.0\.0\.1::\d+::SOCKET", resource)
        session = rm.open_resource(
            resource, read_termination="\n", write_termination="\n", timeout=2000
        )
        assert isinstance(session, MessageBasedResource)
        assert session.query("*IDN?") == PSU_IDN
        session.close()
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
