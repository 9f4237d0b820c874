"""The packaged pyvisa-sim SCPI instruments, as a VISA client sees them.

Every test opens its own copy of the YAML (pyvisa-sim keeps state per file path
for the whole process), so settings never leak between tests.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvisa
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError
from pyvisa.resources import MessageBasedResource

from daqhub_sims import visa_files
from daqhub_sims.visa_files import (
    DMM_RESOURCE,
    DMM_SOCKET_RESOURCE,
    DMM_TCPIP_RESOURCE,
    PSU_RESOURCE,
    PSU_SERIAL_RESOURCE,
    PSU_TCPIP_RESOURCE,
    SHARED_DIALOGUES,
    SHARED_RESOURCE,
    fresh_copy,
    shared_dialogue,
    sim_library,
)

pytestmark = pytest.mark.timeout(20)

NR3 = re.compile(r"[+-]\d\.\d{6}E[+-]\d{2}")
NO_ERROR = '+0,"No error"'
UNDEFINED_HEADER = '-113,"Undefined header"'
DMM_IDN = "SIM,DMM1,VISA0005,1.0"
PSU_IDN = "SIM,PSU1,VISA0006,1.0"
TIMEOUT_MS = 2000
# For the one test that expects no reply.
EXPECTED_TIMEOUT_MS = 150


@pytest.fixture
def sim_yaml(tmp_path: Path) -> Path:
    return fresh_copy(tmp_path)


@pytest.fixture
def rm(sim_yaml: Path) -> Iterator[pyvisa.ResourceManager]:
    manager = pyvisa.ResourceManager(sim_library(sim_yaml))
    yield manager
    manager.close()


def open_session(rm: pyvisa.ResourceManager, name: str) -> MessageBasedResource:
    session = rm.open_resource(
        name, read_termination="\n", write_termination="\n", timeout=TIMEOUT_MS
    )
    assert isinstance(session, MessageBasedResource)
    return session


@pytest.fixture
def dmm(rm: pyvisa.ResourceManager) -> MessageBasedResource:
    return open_session(rm, DMM_RESOURCE)


@pytest.fixture
def psu(rm: pyvisa.ResourceManager) -> MessageBasedResource:
    return open_session(rm, PSU_RESOURCE)


def number(reply: str) -> float:
    assert NR3.fullmatch(reply), f"{reply!r} is not in the +d.ddddddE+dd format"
    return float(reply)


# --- the file and its resources ---


def test_the_packaged_file_is_found_and_copies_are_distinct(tmp_path: Path) -> None:
    assert "dmm_psu.yaml" in visa_files.yaml_names()
    original = visa_files.packaged_yaml()
    first, second = fresh_copy(tmp_path), fresh_copy(tmp_path)
    assert len({original, first, second}) == 3
    assert first.read_text() == second.read_text() == original.read_text()
    with pytest.raises(FileNotFoundError, match="no pyvisa-sim file 'nope.yaml'"):
        visa_files.packaged_yaml("nope.yaml")


def test_every_documented_resource_is_listed(rm: pyvisa.ResourceManager) -> None:
    assert set(rm.list_resources("?*")) == {
        DMM_RESOURCE,
        DMM_TCPIP_RESOURCE,
        DMM_SOCKET_RESOURCE,
        PSU_RESOURCE,
        PSU_SERIAL_RESOURCE,
        PSU_TCPIP_RESOURCE,
        SHARED_RESOURCE,
    }


@pytest.mark.parametrize(
    ("name", "idn"),
    [
        ("GPIB0::5::INSTR", DMM_IDN),
        ("GPIB::5::INSTR", DMM_IDN),
        ("TCPIP::127.0.0.1::INSTR", DMM_IDN),
        ("TCPIP::127.0.0.1::5025::SOCKET", DMM_IDN),
        ("GPIB0::6::INSTR", PSU_IDN),
        ("GPIB::6::INSTR", PSU_IDN),
        ("ASRL7::INSTR", PSU_IDN),
        ("TCPIP::127.0.0.1::inst1::INSTR", PSU_IDN),
        ("GPIB0::20::INSTR", "SIM,SHARED64,VISA0020,1.0"),
    ],
)
def test_resource_name_forms_open_the_documented_instrument(
    rm: pyvisa.ResourceManager, name: str, idn: str
) -> None:
    assert open_session(rm, name).query("*IDN?") == idn


def test_fresh_copies_do_not_share_state(tmp_path: Path) -> None:
    first = pyvisa.ResourceManager(sim_library(fresh_copy(tmp_path)))
    second = pyvisa.ResourceManager(sim_library(fresh_copy(tmp_path)))
    try:
        open_session(first, PSU_RESOURCE).write("VOLT 12")
        assert number(open_session(first, PSU_RESOURCE).query("VOLT?")) == 12.0
        assert number(open_session(second, PSU_RESOURCE).query("VOLT?")) == 0.0
    finally:
        first.close()
        second.close()


def test_one_path_keeps_its_state_across_resource_managers(sim_yaml: Path) -> None:
    """The pyvisa-sim behaviour that makes fresh_copy necessary."""
    first = pyvisa.ResourceManager(sim_library(sim_yaml))
    open_session(first, PSU_RESOURCE).write("VOLT 12")
    first.close()
    again = pyvisa.ResourceManager(sim_library(sim_yaml))
    try:
        assert number(open_session(again, PSU_RESOURCE).query("VOLT?")) == 12.0
    finally:
        again.close()


def test_resources_of_one_device_definition_have_separate_state(
    rm: pyvisa.ResourceManager,
) -> None:
    open_session(rm, PSU_SERIAL_RESOURCE).write("VOLT 9")
    assert number(open_session(rm, PSU_SERIAL_RESOURCE).query("VOLT?")) == 9.0
    assert number(open_session(rm, PSU_RESOURCE).query("VOLT?")) == 0.0
    assert number(open_session(rm, PSU_TCPIP_RESOURCE).query("VOLT?")) == 0.0


# --- common commands and the error queue (both instruments) ---


@pytest.mark.parametrize("name", [DMM_RESOURCE, PSU_RESOURCE])
def test_common_commands(rm: pyvisa.ResourceManager, name: str) -> None:
    session = open_session(rm, name)
    assert session.query("*OPC?") == "1"
    assert session.query("*TST?") == "0"
    assert session.query("SYST:VERS?") == "1999.0"
    for command in ("*RST", "*CLS", "*OPC", "*WAI"):
        session.write(command)
    assert session.query("SYST:ERR?") == NO_ERROR
    assert session.query("*ESR?") == "0"


@pytest.mark.parametrize("name", [DMM_RESOURCE, PSU_RESOURCE])
def test_unknown_command_is_queued_as_undefined_header(
    rm: pyvisa.ResourceManager, name: str
) -> None:
    session = open_session(rm, name)
    session.write("FOO:BAR 1")
    session.write("meas:volt?")  # no case folding in pyvisa-sim: unknown, no reply
    assert session.query("*ESR?") == "32"  # command error bit, read and cleared
    assert session.query("*ESR?") == "0"
    assert session.query("SYST:ERR?") == UNDEFINED_HEADER
    assert session.query("SYST:ERR?") == UNDEFINED_HEADER
    assert session.query("SYST:ERR?") == NO_ERROR


def test_unknown_query_times_out_then_reports_undefined_header(
    dmm: MessageBasedResource,
) -> None:
    dmm.timeout = EXPECTED_TIMEOUT_MS
    with pytest.raises(VisaIOError) as caught:
        dmm.query("MEASure:VOLTage:DC?")
    assert caught.value.error_code == StatusCode.error_timeout
    assert dmm.query("SYST:ERR?") == UNDEFINED_HEADER
    assert dmm.query("SYST:ERR?") == NO_ERROR


def test_semicolon_separated_queries_are_answered_one_by_one(psu: MessageBasedResource) -> None:
    assert number(psu.query("VOLT 3;VOLT?")) == 3.0
    psu.write("*IDN?;*OPC?")
    assert psu.read() == PSU_IDN
    assert psu.read() == "1"


# --- DMM ---


@pytest.mark.parametrize(
    ("query", "nominal"),
    [
        ("MEAS:VOLT:DC?", 1.0),
        ("MEAS:VOLT?", 1.0),
        ("READ?", 1.0),
        ("FETC?", 1.0),
        ("MEAS:CURR:DC?", 1e-3),
        ("MEAS:CURR?", 1e-3),
        ("MEAS:RES?", 1e3),
    ],
)
def test_dmm_readings_are_noisy_within_one_part_in_ten_thousand(
    dmm: MessageBasedResource, query: str, nominal: float
) -> None:
    dmm.write("INIT")
    readings = [number(dmm.query(query)) for _ in range(20)]
    assert all(abs(r - nominal) <= 1.0001e-4 * nominal for r in readings), readings
    assert len(set(readings)) > 1, "readings should carry noise"
    assert dmm.query("SYST:ERR?") == NO_ERROR


def test_dmm_configure_selects_a_function(dmm: MessageBasedResource) -> None:
    assert dmm.query("CONF?") == '"VOLT:DC"'
    for function in ("CURR:DC", "RES", "VOLT:DC"):
        dmm.write(f"CONF:{function}")
        assert dmm.query("CONF?") == f'"{function}"'
    assert dmm.query("SYST:ERR?") == NO_ERROR


@pytest.mark.parametrize("bad", ["CONF:FREQ", "CONF:VOLT:DC 10,0.001", "CONF:volt:dc"])
def test_dmm_configure_refuses_what_it_does_not_know(
    dmm: MessageBasedResource, bad: str
) -> None:
    dmm.write("CONF:RES")
    dmm.write(bad)
    assert dmm.query("CONF?") == '"RES"'
    assert dmm.query("SYST:ERR?") == UNDEFINED_HEADER


# --- PSU ---


@pytest.mark.parametrize("text", ["7", "+7", "7.0", "7.", "7e0", "0.7E1", "+7.000"])
def test_psu_setters_accept_every_number_form(psu: MessageBasedResource, text: str) -> None:
    psu.write(f"VOLT {text}")
    psu.write(f"CURR {text.replace('7', '2')}")
    assert number(psu.query("VOLT?")) == 7.0
    assert number(psu.query("CURR?")) == 2.0
    assert psu.query("SYST:ERR?") == NO_ERROR


def test_psu_defaults(psu: MessageBasedResource) -> None:
    assert psu.query("VOLT?") == "+0.000000E+00"
    assert psu.query("CURR?") == "+1.000000E+00"
    assert psu.query("OUTP?") == "0"


@pytest.mark.parametrize(
    ("setting", "low", "high"), [("VOLT", 0.0, 30.0), ("CURR", 0.0, 3.0)]
)
def test_psu_limits_accept_the_bounds_and_refuse_beyond(
    psu: MessageBasedResource, setting: str, low: float, high: float
) -> None:
    for inside in (low, high):
        psu.write(f"{setting} {inside}")
        assert number(psu.query(f"{setting}?")) == inside
    for outside in (high + 0.5, low - 1.0, "abc"):
        psu.write(f"{setting} {outside}")
        assert number(psu.query(f"{setting}?")) == inside, "a refused value must not stick"
        assert psu.query("SYST:ERR?") == UNDEFINED_HEADER  # pyvisa-sim cannot queue -222
    assert psu.query("SYST:ERR?") == NO_ERROR


def test_psu_output_switches_with_0_and_1_only(psu: MessageBasedResource) -> None:
    psu.write("OUTP 1")
    assert psu.query("OUTP?") == "1"
    psu.write("OUTP 0")
    assert psu.query("OUTP?") == "0"
    psu.write("OUTP ON")
    assert psu.query("OUTP?") == "0"
    assert psu.query("SYST:ERR?") == UNDEFINED_HEADER


@pytest.mark.parametrize(("query", "nominal"), [("MEAS:VOLT?", 5.0), ("MEAS:CURR?", 0.5)])
def test_psu_measurements_are_noisy_around_five_volts_into_ten_ohms(
    psu: MessageBasedResource, query: str, nominal: float
) -> None:
    readings = [number(psu.query(query)) for _ in range(20)]
    assert all(abs(r - nominal) <= 1.0001e-4 * nominal for r in readings), readings
    assert len(set(readings)) > 1


@pytest.mark.parametrize("name", [PSU_SERIAL_RESOURCE, PSU_TCPIP_RESOURCE])
def test_psu_works_the_same_on_its_other_resources(
    rm: pyvisa.ResourceManager, name: str
) -> None:
    session = open_session(rm, name)
    session.write("VOLT 2.5")
    session.write("OUTP 1")
    assert session.query("VOLT?") == "+2.500000E+00"
    assert session.query("OUTP?") == "1"
    session.write("VOLT 99")
    assert session.query("SYST:ERR?") == UNDEFINED_HEADER


# --- the shared contention device ---


def test_shared_device_answers_every_dialogue_with_its_own_reply(
    rm: pyvisa.ResourceManager,
) -> None:
    session = open_session(rm, SHARED_RESOURCE)
    for n in range(SHARED_DIALOGUES):
        query, reply = shared_dialogue(n)
        assert session.query(query) == reply
    session.write(f"ID{SHARED_DIALOGUES}?")
    assert session.query("SYST:ERR?") == UNDEFINED_HEADER
    with pytest.raises(ValueError, match="dialogues 0..63"):
        shared_dialogue(SHARED_DIALOGUES)


def test_shared_device_under_a_lock_routes_every_reply_to_its_caller(
    rm: pyvisa.ResourceManager,
) -> None:
    """What the contention tests rely on: with serialisation, no reply goes astray."""
    sessions = [open_session(rm, SHARED_RESOURCE) for _ in range(4)]
    lock = threading.Lock()
    wrong: list[tuple[str, str]] = []

    def worker(session: MessageBasedResource, offset: int) -> None:
        for i in range(100):
            query, reply = shared_dialogue((offset + i) % SHARED_DIALOGUES)
            with lock:
                got = session.query(query)
            if got != reply:
                wrong.append((reply, got))

    threads = [
        threading.Thread(target=worker, args=(s, 16 * k)) for k, s in enumerate(sessions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []
