"""Registration of daqhub-newport: types, schemas, capabilities and lab-file validation."""

from __future__ import annotations

import inspect
from pathlib import Path

import jsonschema
import pytest

from daqhub.capabilities import missing_methods
from daqhub.config import ConfigError, instrument_schema, parse
from daqhub.host import PluginHost

pytestmark = pytest.mark.timeout(10)


def test_both_types_in_both_flavors(host: PluginHost) -> None:
    types = host.instrument_types()
    assert {("newport.esp300", "v2"), ("newport.esp300", "v4"), ("newport.1830c", "v2"),
            ("newport.1830c", "v4")} <= set(types)
    for (name, _flavor), t in types.items():
        if not name.startswith("newport."):
            continue
        assert t.problems() == []
        assert t.transport == "serial"
        for capability in t.capabilities:
            assert missing_methods(t.factory, capability) == [], (name, capability)


@pytest.mark.parametrize("name, capability", [("newport.esp300", "Motion"),
                                              ("newport.1830c", "PowerMeter")])
def test_v4_capability_methods_are_coroutines(host: PluginHost, name: str,
                                              capability: str) -> None:
    t = host.instrument_type(name, "v4")
    assert t is not None and capability in t.capabilities
    for method in ("move_absolute", "home", "stop", "wait_until_done", "position") if (
            capability == "Motion") else ("power", "set_wavelength", "set_units", "set_range"):
        assert inspect.iscoroutinefunction(getattr(t.factory, method)), method


def test_serial_defaults_follow_the_manuals(host: PluginHost) -> None:
    esp = host.instrument_type("newport.esp300", "v2")
    meter = host.instrument_type("newport.1830c", "v2")
    assert esp is not None and meter is not None
    assert (esp.serial_settings["baudrate"], esp.serial_settings["rtscts"]) == (19200, True)
    assert (meter.serial_settings["baudrate"], meter.serial_settings["rtscts"]) == (9600, False)


def test_channels_take_their_unit_from_the_block(host: PluginHost) -> None:
    esp = host.instrument_type("newport.esp300", "v4")
    meter = host.instrument_type("newport.1830c", "v4")
    assert esp is not None and meter is not None
    [pos] = esp.channels_for({"axis": 2, "units": "deg"})
    assert (pos.name, pos.kind, pos.unit, pos.dtype) == ("position", "scalar", "deg", "float64")
    assert esp.channels_for({"axis": 1})[0].unit == "mm"
    [power] = meter.channels_for({"units": "dBm"})
    assert (power.name, power.unit) == ("power", "dBm")
    assert meter.channels_for({})[0].unit == "W"


@pytest.mark.parametrize("block, ok", [
    ({"axis": 1}, True), ({"axis": 3, "units": "deg", "limits": [-90, 90]}, True),
    ({"axis": 4}, False), ({"units": "mm"}, False), ({"axis": 1, "units": "furlong"}, False),
    ({"axis": 1, "limits": [1]}, False), ({"axis": 1, "rtscts": "yes"}, False),
])
def test_esp300_schema(host: PluginHost, block: dict[str, object], ok: bool) -> None:
    t = host.instrument_type("newport.esp300", "v2")
    assert t is not None
    full = {"id": "x", "type": "newport.esp300", "port": "sim://esp300", **block}
    validator = jsonschema.Draft202012Validator(instrument_schema(t))
    assert (not list(validator.iter_errors(full))) is ok


LAB = """
[v2]
enabled = true
[[v2.instruments]]
id = "x"
type = "newport.esp300"
port = "sim://esp300"
axis = 1
[[v2.instruments]]
id = "power"
type = "newport.1830c"
port = "sim://newport1830c"
units = "dBm"
wavelength_nm = 800

[v4]
enabled = true
[[v4.instruments]]
id = "y"
type = "newport.esp300"
port = "sim://esp300"
axis = AXIS_Y
rtscts = RTSCTS_Y
"""


def test_a_lab_with_two_axes_on_one_controller_in_two_flavors(host: PluginHost) -> None:
    lab = parse(LAB.replace("AXIS_Y", "2").replace("RTSCTS_Y", "true"), "lab.toml", host)
    assert lab is not None


@pytest.mark.parametrize("axis, rtscts, words, key", [
    ("1", "true", "both drive axis 1", "axis = AXIS_Y"),
    ("2", "false", "disagree on rtscts", "rtscts = RTSCTS_Y")])
def test_clashing_axes_are_reported_at_their_line(host: PluginHost, axis: str, rtscts: str,
                                                  words: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(LAB.replace("AXIS_Y", axis).replace("RTSCTS_Y", rtscts), "lab.toml", host)
    [problem] = [p for p in info.value.problems if "(from plugin daqhub-newport)" in p.message]
    assert words in problem.message
    assert problem.line == LAB.splitlines().index(key) + 1  # the second instrument's key
    # the core's own check of one line's settings names both blocks too
    core = [p for p in info.value.problems if p is not problem]
    assert all("share a port" in p.message and "rtscts=True" in p.message for p in core)
    assert len(core) == (1 if key.startswith("rtscts") else 0)


def test_the_entry_point_loads_cleanly() -> None:
    h = PluginHost()
    h.load_entry_points()
    assert [p for p in h.problems if p.distribution == "daqhub-newport"] == []
    assert ("newport.1830c", "v2") in h.instrument_types()
    owner = h.type_owner("newport.esp300", "v4")
    assert owner is not None and owner.distribution == "daqhub-newport"


def _two_axes(port_a: str, port_b: str, rtscts_b: str = "true") -> str:
    return (f'[[v2.instruments]]\nid = "a"\ntype = "newport.esp300"\nport = "{port_a}"\n'
            f'axis = 1\n\n[[v4.instruments]]\nid = "b"\ntype = "newport.esp300"\n'
            f'port = "{port_b}"\naxis = AXIS\nrtscts = {rtscts_b}\n')


@pytest.mark.parametrize("spelling", ["host name", "device link"])
def test_one_controller_is_one_controller_however_its_port_is_spelt(
        host: PluginHost, tmp_path: Path, spelling: str) -> None:
    """localhost and 127.0.0.1, or a /dev/serial/by-id link and its device, reach one
    ESP300: two instruments on its axis 1 used to pass and drive the same axis."""
    if spelling == "host name":
        port_a, port_b = "socket://localhost:40123", "socket://127.0.0.1:40123"
    else:
        device = tmp_path / "ttyUSB7"
        device.write_text("")  # validation only checks that the device path exists
        (tmp_path / "by-id").mkdir()
        link = tmp_path / "by-id" / "usb-Newport_ESP300-if00"
        link.symlink_to(device)
        port_a, port_b = str(device), str(link)
    text = _two_axes(port_a, port_b)
    assert parse(text.replace("AXIS", "2"), "lab.toml", host, tmp_path) is not None
    with pytest.raises(ConfigError) as info:
        parse(text.replace("AXIS", "1"), "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    assert "'a' and 'b' both drive axis 1" in problem.message
    assert f"{port_a!r} and {port_b!r} reach the same device" in problem.message
    assert problem.line == text.splitlines().index("axis = AXIS") + 1
    with pytest.raises(ConfigError) as info:
        parse(_two_axes(port_a, port_b, "false").replace("AXIS", "2"), "lab.toml", host,
              tmp_path)
    assert any("'a' and 'b' share the ESP300" in p.message and "disagree on rtscts" in
               p.message and p.message.endswith("(from plugin daqhub-newport)")
               for p in info.value.problems)


def _meters(port_b: str, b_settings: str = "wavelength_nm = 1064", enabled_b: str = "true"
            ) -> str:
    return ('[[v2.instruments]]\nid = "p633"\ntype = "newport.1830c"\n'
            'port = "socket://localhost:40127"\nwavelength_nm = 633\nrange = 0\n\n'
            '[[v4.instruments]]\nid = "p1064"\ntype = "newport.1830c"\n'
            f'port = "{port_b}"\nunits = "dBm"\n{b_settings}\nenabled = {enabled_b}\n')


def test_two_blocks_on_one_1830c_must_set_it_alike(host: PluginHost) -> None:
    """Two blocks on one meter with different wavelengths validated and ran: the meter keeps
    one calibration, so one block's data were stored mis-calibrated, unflagged. Two that
    agree (a v2 and a v4 block while a lab migrates, each with its own channel unit) are a
    supported setup and validate."""
    for agreeing in ("wavelength_nm = 633", "wavelength_nm = 633\nrange = 0", "filter = 'slow'",
                     "attenuator = true"):
        assert parse(_meters("socket://127.0.0.1:40127", agreeing), "lab.toml", host)
    text = _meters("socket://127.0.0.1:40127", "range = 3\nwavelength_nm = 1064")
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host)
    [problem] = info.value.problems
    assert problem.message.startswith(
        "instruments 'p633' ([[v2.instruments]]) and 'p1064' ([[v4.instruments]]) read the "
        "1830-C on socket://127.0.0.1:40127 ('socket://localhost:40127' and "
        "'socket://127.0.0.1:40127' reach the same device")
    assert "set it differently: wavelength_nm 633 and 1064, range 0 and 3;" in problem.message
    assert problem.line == text.splitlines().index("wavelength_nm = 1064") + 1
    assert parse(_meters("socket://localhost:40128"), "lab.toml", host) is not None
    assert parse(_meters("socket://localhost:40127", enabled_b="false"), "lab.toml",
                 host) is not None


STEPS = """
[[v2.instruments]]
id = "stage"
type = "newport.esp300"
port = "socket://localhost:40129"
axis = 1

[[v4.instruments]]
id = "power"
type = "newport.1830c"
port = "socket://localhost:40130"

[[routines]]
instrument = "stage"
steps = [
    ["set_velocity", -5],
    ["set_velocity", "fast"],
    ["set_acceleration", 0],
    ["set_left_limit", "x"],
    ["move_absolute", "abc"],
    ["move_relative", 1.5], ["set_velocity", 2.5], ["set_right_limit", 10],
]

[[routines]]
instrument = "power"
steps = [
    ["set_wavelength", 20000],
    ["set_wavelength", "abc"],
    ["set_wavelength", 633],
]
"""


def test_validate_refuses_values_the_instruments_cannot_take(host: PluginHost) -> None:
    """These passed ``daqhub validate``; the routine failed when the step ran, after the
    steps before it had run."""
    with pytest.raises(ConfigError) as info:
        parse(STEPS, "lab.toml", host)
    found = {(p.line, p.message.split(": ", 1)[1].split(" (daqhub plugins")[0])
             for p in info.value.problems}
    lines = STEPS.splitlines()
    assert found == {(lines.index(f"    {step},") + 1, why) for step, why in [
        ('["set_velocity", -5]',
         "set_velocity: velocity must be a number from 1e-09 to 1e+12 units/s, got -5"),
        ('["set_velocity", "fast"]', "set_velocity's value is a float, got 'fast'"),
        ('["set_acceleration", 0]',
         "set_acceleration: acceleration must be a number from 1e-09 to 1e+12 units/s^2, "
         "got 0"),
        ('["set_left_limit", "x"]', "set_left_limit's value is a float, got 'x'"),
        ('["move_absolute", "abc"]', "move_absolute's position is a float, got 'abc'"),
        ('["set_wavelength", 20000]',
         "set_wavelength: wavelength must be a number from 1 to 9999 nm, got 20000"),
        ('["set_wavelength", "abc"]', "set_wavelength's value is a float, got 'abc'"),
    ]}
