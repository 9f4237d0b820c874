"""The SCPI profiles against pyvisa-sim (daqhub_sims/visa/dmm_psu.yaml, a fresh copy per test)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from daqhub.instrument import DriverError
from daqhub.measurement import Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub_scpi.protocol import ScpiDeviceError
from daqhub_sims import visa_files

pytestmark = pytest.mark.timeout(20)

DMM = visa_files.DMM_RESOURCE
PSU = visa_files.PSU_RESOURCE


def values(rows: list[Any]) -> dict[str, tuple[Any, str]]:
    """channel -> (value, unit) of measurements or unified rows."""
    out = {}
    for r in rows:
        assert isinstance(r.data, Scalar)
        out[r.channel] = (r.data.value, r.data.unit)
    return out


def test_dmm_v2_reads_each_configured_function(sim_library, open_resource, build) -> None:
    dmm = build("v2", "scpi.dmm", open_resource(DMM, sim_library), "dmm",
                function=["VOLT:DC", "CURR:DC", "RES"])
    dmm.connect()
    assert dmm.identify() == "SIM,DMM1,VISA0005,1.0"
    rows = dmm.read()
    assert [r.instrument_id for r in rows] == ["dmm"] * 3
    got = values(rows)
    assert got["voltage"][1] == "V" and got["voltage"][0] == pytest.approx(1.0, rel=2e-4)
    assert got["current"][1] == "A" and got["current"][0] == pytest.approx(1e-3, rel=2e-4)
    assert got["resistance"][1] == "Ohm" and got["resistance"][0] == pytest.approx(1e3, rel=2e-4)
    stamps = [r.timestamp_ns for r in rows]
    assert stamps == sorted(stamps)


def test_dmm_v4_reads_the_default_voltage_channel(sim_library, open_resource, build) -> None:
    dmm = build("v4", "scpi.dmm", open_resource(DMM, sim_library), "dmm4")

    async def scenario() -> list[Any]:
        await dmm.start()
        assert await dmm.identify() == "SIM,DMM1,VISA0005,1.0"
        return await dmm.read()

    batches = asyncio.run(scenario())
    rows = [r for b in batches for r in batch_to_rows(b)]
    assert [(r.instrument_id, r.channel) for r in rows] == [("dmm4", "voltage")]
    assert rows[0].data.value == pytest.approx(1.0, rel=2e-4)
    assert rows[0].data.unit == "V"


@pytest.mark.parametrize("resource", [visa_files.DMM_TCPIP_RESOURCE,
                                      visa_files.DMM_SOCKET_RESOURCE])
def test_dmm_over_other_interfaces(sim_library, open_resource, build, resource: str) -> None:
    dmm = build("v2", "scpi.dmm", open_resource(resource, sim_library), "dmm")
    dmm.connect()
    assert values(dmm.read())["voltage"][0] == pytest.approx(1.0, rel=2e-4)


def test_psu_v2_power_supply_capability(sim_library, open_resource, build) -> None:
    psu = build("v2", "scpi.psu", open_resource(PSU, sim_library), "psu")
    psu.connect()
    psu.set_voltage(12.5)
    psu.set_current_limit(0.25)
    psu.set_output(True)
    assert psu.query("VOLT?") == "+1.250000E+01"
    assert psu.query("CURR?") == "+2.500000E-01"
    assert psu.query("OUTP?") == "1"
    psu.set_output(False)
    assert psu.query("OUTP?") == "0"
    # pyvisa-sim's MEAS readings are fixed at 5 V / 0.5 A (it cannot couple them to set-points)
    assert psu.voltage() == pytest.approx(5.0, rel=2e-4)
    assert psu.current() == pytest.approx(0.5, rel=2e-4)
    got = values(psu.read())
    assert got["voltage"][1] == "V" and got["current"][1] == "A"


def test_psu_v4_power_supply_capability(sim_library, open_resource, build) -> None:
    psu = build("v4", "scpi.psu", open_resource(visa_files.PSU_SERIAL_RESOURCE, sim_library),
                "psu4")

    async def scenario() -> tuple[str, str, float, float]:
        await psu.start()
        await psu.set_voltage(3)
        await psu.set_current_limit(1.5)
        await psu.set_output(True)
        return (await psu.query("VOLT?"), await psu.query("OUTP?"), await psu.voltage(),
                await psu.current())

    volt, outp, v, i = asyncio.run(scenario())
    assert (volt, outp) == ("+3.000000E+00", "1")
    assert v == pytest.approx(5.0, rel=2e-4) and i == pytest.approx(0.5, rel=2e-4)


def test_refused_set_point_reports_the_scpi_error(sim_library, open_resource, build) -> None:
    psu = build("v2", "scpi.psu", open_resource(PSU, sim_library), "psu")
    psu.connect()
    psu.set_voltage(2)
    with pytest.raises(ScpiDeviceError) as info:
        psu.set_voltage(31)  # above the 30 V maximum
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("psu", "VOLT 31", -113)
    assert err.errors == [(-113, "Undefined header")]
    assert "psu" in str(err) and "VOLT 31" in str(err) and "-113" in str(err)
    assert psu.query("VOLT?") == "+2.000000E+00"  # unchanged, and the queue was drained
    assert psu.errors() == []


def test_non_finite_set_point_is_not_sent(sim_library, open_resource, build) -> None:
    psu = build("v2", "scpi.psu", open_resource(PSU, sim_library), "psu")
    psu.connect()
    with pytest.raises(DriverError, match="not a finite number") as info:
        psu.set_voltage(math.nan)
    assert info.value.instrument_id == "psu" and "VOLT" in info.value.command
    assert psu.errors() == []


def test_unknown_query_is_explained_by_the_error_queue(sim_library, open_resource,
                                                       build) -> None:
    dmm = build("v2", "scpi.dmm", open_resource(DMM, sim_library), "dmm")
    dmm.connect()
    with pytest.raises(ScpiDeviceError) as info:
        dmm.query("MEAS:FREQ?")  # pyvisa-sim: no reply at all, then -113 in the queue
    assert (info.value.command, info.value.code) == ("MEAS:FREQ?", -113)
    assert "no reply within 300 ms" in str(info.value)
    assert values(dmm.read())["voltage"][0] == pytest.approx(1.0, rel=2e-4)


def test_errors_left_in_the_queue_when_checking_is_off(sim_library, open_resource,
                                                       build) -> None:
    dmm = build("v2", "scpi.dmm", open_resource(DMM, sim_library), "dmm", check_errors=False)
    dmm.connect()
    dmm.write("BOGUS")  # accepted silently: nobody looks at the queue
    dmm.write("CONF:FOO")
    assert dmm.errors() == [(-113, "Undefined header")] * 2
    assert dmm.errors() == []


def test_generic_commands(sim_library, open_resource, build) -> None:
    dmm = build("v2", "scpi.dmm", open_resource(DMM, sim_library), "dmm")
    dmm.connect()
    dmm.write("CONF:RES")
    assert dmm.query("CONF?") == '"RES"'
    dmm.wait_complete(timeout_s=1.0)
    dmm.reset()
    assert dmm.measure("voltage") == pytest.approx(1.0, rel=2e-4)
    with pytest.raises(DriverError, match="no reading 'power'"):
        dmm.measure("power")
    with pytest.raises(DriverError, match="may not contain"):
        dmm.write("CONF:RES\n*RST")


def test_custom_profile_readings_and_init(sim_library, open_resource, build) -> None:
    readings = [
        {"name": "volts", "query": "MEAS:VOLT:DC?", "unit": "V"},
        {"name": "first", "query": "READ?", "unit": "V", "parse": "csv[0]"},
        {"name": "serial", "query": "*IDN?", "parse": "regex", "regex": r"VISA(\d+)"},
        {"name": "version", "query": "*IDN?", "parse": "csv[3]"},
        {"name": "done", "query": "*OPC?", "parse": "int"},
        {"name": "selftest_failed", "query": "*TST?", "parse": "bool"},
    ]
    inst = build("v2", "scpi.custom", open_resource(DMM, sim_library), "box",
                 readings=readings, init=["*RST", "CONF:RES"])
    inst.connect()
    assert inst.query("CONF?") == '"RES"'  # the init commands ran
    rows = inst.read()
    got = values(rows)
    assert got["volts"][0] == pytest.approx(1.0, rel=2e-4) and got["volts"][1] == "V"
    assert got["first"][0] == pytest.approx(1.0, rel=2e-4)
    assert got["serial"] == (5.0, "")
    assert got["version"] == (1.0, "")
    assert got["done"] == (1, "") and type(got["done"][0]).__name__ == "int64"
    assert got["selftest_failed"] == (False, "")


def test_custom_init_failure_names_the_command(sim_library, open_resource, build) -> None:
    inst = build("v2", "scpi.custom", open_resource(DMM, sim_library), "box",
                 readings=[{"name": "v", "query": "MEAS:VOLT?"}],
                 init=["*RST", "CONF:FOO", "CONF:RES"])
    with pytest.raises(ScpiDeviceError) as info:
        inst.connect()
    assert (info.value.instrument_id, info.value.command, info.value.code) == (
        "box", "CONF:FOO", -113)
    assert inst.query("CONF?") == '"VOLT:DC"'  # stopped at the refused command


def test_unparseable_reply_names_instrument_and_command(sim_library, open_resource,
                                                        build) -> None:
    inst = build("v2", "scpi.custom", open_resource(DMM, sim_library), "box",
                 readings=[{"name": "f", "query": "CONF?"}])
    inst.connect()
    with pytest.raises(DriverError) as info:
        inst.read()
    assert (info.value.instrument_id, info.value.command) == ("box", "CONF?")
    assert "unexpected reply '\"VOLT:DC\"'" in str(info.value)


def test_wrong_read_termination_is_reported_not_misread(sim_library, open_resource,
                                                        build) -> None:
    dmm = build("v2", "scpi.dmm", open_resource(DMM, sim_library), "dmm",
                read_termination="\r\n")
    with pytest.raises(DriverError, match=r"does not end with '\\r\\n'") as info:
        dmm.connect()
    assert info.value.instrument_id == "dmm" and info.value.command == "*IDN?"
