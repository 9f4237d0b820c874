"""The 1830-C power meter driver against the simulated meter (``sim://newport1830c``).

The simulated light is a fixed power with no noise unless a test asks for noise, so every
reading has one right value in each unit.
"""

from __future__ import annotations

import math

import pytest
from newport_helpers import Build, advance, manual_clock_sim, run, sim_url

from daqhub.instrument import DriverError
from daqhub.measurement import Measurement, Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub_newport import Meter1830cV2, Meter1830cV4
from daqhub_sims import registry

pytestmark = pytest.mark.timeout(20)

PM = "newport.1830c"
QUIET = {"noise": 0, "power": 1e-6}


def meter_v2(build: Build, url: str, **config: object) -> Meter1830cV2:
    m = build(PM, "v2", url, config, "meter")
    assert isinstance(m, Meter1830cV2)
    m.connect()
    return m


def test_connect_applies_the_lab_settings(build: Build) -> None:
    m = meter_v2(build, sim_url("newport1830c", **QUIET), units="dBm", wavelength_nm=800,
                 range=6, filter="slow", attenuator=False)
    assert m.units() == "dBm"
    assert m.wavelength() == 800.0
    assert m.current_range() == 6
    assert m.filter_speed() == "slow"
    assert m.attenuator() is False
    assert m.status() & 3 == 0


@pytest.mark.parametrize("units, value", [
    ("W", 1e-6), ("dBm", -30.0), ("dB", -30.0), ("REL", 0.001),  # reference: 1 mW at power-up
])
def test_readings_in_every_unit(build: Build, units: str, value: float) -> None:
    m = meter_v2(build, sim_url("newport1830c", **QUIET), units=units)
    [sample] = m.read()
    assert isinstance(sample, Measurement)
    assert sample.channel == "power" and sample.data.unit == units
    assert math.isclose(sample.data.value, value, rel_tol=1e-9)
    assert sample.metadata == {}
    assert math.isclose(m.power(), value, rel_tol=1e-9)


def test_the_channel_keeps_its_declared_unit_when_a_script_changes_the_display(
        build: Build) -> None:
    m = meter_v2(build, sim_url("newport1830c", **QUIET), units="W")
    m.set_units("dBm")
    assert m.power() == -30.0  # what the front panel shows
    [sample] = m.read()
    assert sample.data == Scalar(1e-6, "W")  # what the channel stores
    assert m.units() == "dBm"  # and the display stays as the script left it


def test_a_failed_poll_does_not_undo_the_scripts_units(build: Build) -> None:
    """A poll switches the meter to the channel's unit and back; failing in between used to
    leave it in the channel's unit, and power() returned watts to a script set to dBm."""
    url = sim_url("newport1830c", **QUIET)
    m = meter_v2(build, url, units="W", reply_timeout=0.1)
    m.set_units("dBm")
    faults = registry.endpoint(url).faults
    faults.latency = 0.15  # the meter stalls mid-poll, after it took the switch to W
    with pytest.raises(DriverError):
        m.read()
    faults.latency = 0.0
    assert m.power() == -30.0  # switched back before the reply was read
    assert m.units() == "dBm"
    [sample] = m.read()
    assert sample.data == Scalar(1e-6, "W")


def test_reference_and_relative_readings(build: Build) -> None:
    url = sim_url("newport1830c", **QUIET)
    m = meter_v2(build, url, units="REL")
    m.store_reference()
    assert m.read()[0].data.value == 1.0
    m.set_units("dB")
    assert m.power() == 0.0


@pytest.mark.parametrize("power, flags", [
    (1.0e-6, {}),
    (2.1e-6, {"over_range": True}),  # above the 2 uW full scale of range 5, below the clip
    (3.0e-6, {"over_range": True, "saturated": True}),  # clipped at 1.1 x full scale
])
def test_over_range_and_saturation_are_flagged_in_the_metadata(
        build: Build, power: float, flags: dict[str, bool]) -> None:
    url, clock = manual_clock_sim("newport1830c", noise=0, power=power)
    m = meter_v2(build, url, range=5)
    advance(url, clock, 0.05)  # one sample on range 5
    first = m.read()[0]
    assert first.metadata == flags
    assert m.read()[0].metadata == flags  # still true: each flag describes its own reading
    m.set_range(0)  # auto range gets it back in range
    advance(url, clock, 0.5)
    settled = m.read()[0]
    assert settled.metadata == {} and math.isclose(settled.data.value, power, rel_tol=1e-3)


def test_parameter_error_bit_raises_and_is_cleared(build: Build) -> None:
    m = meter_v2(build, sim_url("newport1830c", **QUIET))
    with pytest.raises(DriverError) as info:
        m.set_wavelength(2000)  # outside the detector's 400-1100 nm
    err = info.value
    assert (err.instrument_id, err.command, err.code) == ("meter", "W2000", 1)
    assert "parameter error" in err.message
    assert m.status() & 3 == 0
    assert m.wavelength() == 633.0  # unchanged
    m.set_wavelength(800)  # and the meter works on


def test_command_error_bit_raises_and_is_cleared(build: Build) -> None:
    m = meter_v2(build, sim_url("newport1830c", **QUIET), reply_timeout=0.1)
    with pytest.raises(DriverError) as info:
        m.raw_command("X5")
    assert (info.value.command, info.value.code) == ("X5", 2)
    assert "command error" in info.value.message
    with pytest.raises(DriverError) as qinfo:
        m.raw_query("X?")  # a query the meter does not know: silence, explained by Q?
    assert (qinfo.value.command, qinfo.value.code) == ("X?", 2)
    assert m.status() & 3 == 0
    assert m.raw_query("U?") == "1"


def test_zero_attenuator_filter_round_trips(build: Build) -> None:
    m = meter_v2(build, sim_url("newport1830c", **QUIET))
    m.set_zero(True)
    assert m.zero() is True
    assert abs(m.read()[0].data.value) < 1e-9  # the offset is the current light
    m.set_zero(False)
    m.set_attenuator(True)
    assert m.attenuator() is True
    m.set_filter("medium")
    assert m.filter_speed() == "medium"
    with pytest.raises(ValueError):
        m.set_filter("turbo")


def test_v4_meter_reads_batches_and_raises_status_errors(build: Build) -> None:
    m = build(PM, "v4", sim_url("newport1830c", **QUIET), {"units": "dBm"}, "meter4")
    assert isinstance(m, Meter1830cV4)

    async def script() -> tuple[list, float]:
        await m.start()
        batches = await m.read()
        await m.set_units("W")
        watts = await m.power()
        try:
            await m.set_wavelength(5000)
        except DriverError as exc:
            assert exc.code == 1
        else:
            raise AssertionError("W5000 was accepted")
        await m.close()
        return batches, watts

    batches, watts = run(script())
    [row] = batch_to_rows(batches[0])
    assert (row.instrument_id, row.channel, row.data, row.metadata) == (
        "meter4", "power", Scalar(-30.0, "dBm"), {})
    assert watts == 1e-6


def test_two_instruments_on_one_meter_each_read_in_their_own_unit(build: Build) -> None:
    url = sim_url("newport1830c", **QUIET)
    watts = build(PM, "v2", url, {"units": "W"}, "watts")
    dbm = build(PM, "v4", url, {"units": "dBm"}, "dbm")
    watts.connect()
    run(dbm.start())  # the meter is now in dBm
    for _ in range(2):
        assert watts.read()[0].data == Scalar(1e-6, "W")
        [row] = batch_to_rows(run(dbm.read())[0])
        assert row.data == Scalar(-30.0, "dBm")
    watts.raw_command("U4")  # behind the drivers' back: units unknown now
    assert watts.read()[0].data == Scalar(1e-6, "W")
    assert watts.units() == "W"


def test_a_switch_takes_true_or_false_only(build: Build) -> None:
    """``set_attenuator("off")`` went out as ``A1``: its format took any truthy value."""
    from daqhub.commands import argument_problem
    from daqhub_newport.plugin import daqhub_instrument_types

    m = meter_v2(build, sim_url("newport1830c", **QUIET), attenuator=False)
    for setter in (m.set_attenuator, m.set_zero):
        with pytest.raises(ValueError, match=r"must be a bool, got 'off'"):
            setter("off")
    assert m.attenuator() is False and m.zero() is False
    m.set_attenuator(True)
    assert m.attenuator() is True
    itype = next(t for t in daqhub_instrument_types() if t.name == PM and t.flavor == "v2")
    assert argument_problem(itype, "set_attenuator", ("off",)) == (
        "set_attenuator's value is a bool, got 'off'",
        "daqhub plugins newport.1830c lists its commands and arguments")


def test_readings_from_before_an_auto_range_are_flagged_busy(build: Build) -> None:
    """The light steps from 1 uW to 100 uW: the meter auto-ranges (busy, status bit 5) and
    takes no readings meanwhile, nor until its next sample after. Every poll in between gives
    the 1 uW from before: each is flagged ``busy``, never stored as a current reading."""
    url, clock = manual_clock_sim("newport1830c", noise=0, power=1e-6)
    m = meter_v2(build, url)  # auto range (power-on), 1 uW on range 5
    assert m.read()[0].metadata == {}
    registry.endpoint(url).device.set_power(1e-4)
    advance(url, clock, 0.05)  # the next sample is out of range 5: busy for 0.1 s from 0.04
    samples = [m.read()[0]]
    advance(url, clock, 0.05)  # still busy
    samples.append(m.read()[0])
    advance(url, clock, 0.05)  # busy no more, but the next sample is at 0.16
    samples.append(m.read()[0])
    assert [(s.data.value, s.metadata) for s in samples] == [(1e-6, {"busy": True})] * 3
    advance(url, clock, 0.02)  # a sample on the new range
    fresh = m.read()[0]
    assert fresh.metadata == {} and math.isclose(fresh.data.value, 1e-4, rel_tol=1e-9)


def test_connect_takes_a_meter_out_of_hold_and_the_settings_show_it(build: Build) -> None:
    """A meter left in hold (``G0``) shows the reading of when it stopped. Connect sets it
    running (``G1``); until its next reading, the held one is flagged ``busy``. The settings
    snapshot records run or hold."""
    url, clock = manual_clock_sim("newport1830c", noise=0, power=1e-6)
    device = registry.endpoint(url).device
    device.feed(b"G0\n")  # left in hold by an earlier program
    device.set_power(1.5e-6)
    advance(url, clock, 0.1)  # held: no readings
    m = meter_v2(build, url)
    held = m.read()[0]
    assert (held.data.value, held.metadata) == (1e-6, {"busy": True})
    advance(url, clock, 0.05)
    fresh = m.read()[0]
    assert fresh.metadata == {} and math.isclose(fresh.data.value, 1.5e-6, rel_tol=1e-9)
    assert m.settings()["running"] is True
    m.set_running(False)
    assert m.settings()["running"] is False


def test_raw_commands_and_raw_queries_are_told_apart(build: Build) -> None:
    """A query sent as a raw command would have its reply read as the status byte (and the
    status byte then left for the next query to read as its answer); a set command sent as
    a raw query gets no reply. Both are refused before anything is sent."""
    m = meter_v2(build, sim_url("newport1830c", **QUIET))
    with pytest.raises(ValueError, match="raw_query"):
        m.raw_command("W?")
    with pytest.raises(ValueError, match="raw_command"):
        m.raw_query("W800")
    assert m.wavelength() == 633.0
    assert m.raw_query("w ?") == "0633"
