"""Registration: types, channels, link settings, and lab files the plugin accepts or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from daqhub.config import ConfigError, parse
from daqhub.host import PluginHost
from daqhub_sims import plugin as sims_plugin

#: every model the driver knows is a type (issue 17): sliders, rotation mounts, linear stages
TYPE_NAMES = {"elliptec.ell6", "elliptec.ell9", "elliptec.ell14", "elliptec.ell15",
              "elliptec.ell16", "elliptec.ell17", "elliptec.ell18", "elliptec.ell20",
              "elliptec.ell21"}


def test_every_type_comes_in_both_flavors_with_motion(host: PluginHost) -> None:
    types = host.instrument_types()
    assert {(n, f) for n, f in types} == {(n, f) for n in TYPE_NAMES for f in ("v2", "v4")}
    for t in types.values():
        assert t.problems() == []
        assert t.transport == "serial" and "Motion" in t.capabilities
        assert t.serial_settings == {"baudrate": 9600, "bytesize": 8, "parity": "N",
                                     "stopbits": 1, "rtscts": False, "xonxoff": False,
                                     "dsrdtr": False}


@pytest.mark.parametrize(("name", "unit"), [("elliptec.ell14", "deg"), ("elliptec.ell20", "mm"),
                                            ("elliptec.ell9", "slot"), ("elliptec.ell6", "slot"),
                                            ("elliptec.ell16", "deg"), ("elliptec.ell17", "mm"),
                                            ("elliptec.ell18", "deg"), ("elliptec.ell21", "deg")])
def test_position_channel_unit_per_model(host: PluginHost, name: str, unit: str) -> None:
    t = host.instrument_type(name, "v4")
    assert t is not None
    [channel] = t.channels_for({})
    assert (channel.name, channel.kind, channel.unit, channel.dtype) == (
        "position", "scalar", unit, "float64")


LAB = """
[v2]
enabled = true

[[v2.instruments]]
id = "rotator"
type = "elliptec.ell14"
port = "sim://elliptec?devices=0:ELL14,1:ELL9"
address = {rot_address}
{extra}

[[v4.instruments]]
id = "slider"
type = "elliptec.ell9"
port = "sim://elliptec?devices=0:ELL14,1:ELL9"
address = {slider_address}
"""


def lab(rot_address: str = "0", slider_address: str = "1", extra: str = "") -> str:
    return LAB.format(rot_address=rot_address, slider_address=slider_address, extra=extra)


def test_the_design_example_lab_file_is_accepted(host: PluginHost, tmp_path: Path) -> None:
    config = parse(lab(extra="velocity = 60\nhome_on_start = true\nmove_timeout = 5"),
                   "lab.toml", host, tmp_path)
    assert [i.id for i in config.instruments()] == ["rotator", "slider"]
    assert parse(lab(rot_address='"A"'), "lab.toml", host, tmp_path)


@pytest.mark.parametrize(("text", "expected"), [
    (lab(rot_address="16"), "address"),
    (lab(rot_address='"G"'), "address"),
    (lab(extra="velocity = 0"), "velocity"),
    (lab(extra="spead = 3"), "unknown key 'spead'"),
    (lab(slider_address="0"), "both use address 0"),
    (lab(slider_address='"0"'), "both use address 0"),
    (LAB.replace("address = {rot_address}\n", "").format(extra="", slider_address="1"),
     "'address' is required"),
])
def test_bad_lab_files_are_refused_with_the_reason(host: PluginHost, tmp_path: Path,
                                                   text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, "lab.toml", host, tmp_path)
    assert expected in str(err.value)


def test_a_shared_address_is_reported_at_the_second_instruments_line(
        host: PluginHost, tmp_path: Path) -> None:
    text = lab(slider_address="0")
    with pytest.raises(ConfigError) as err:
        parse(text, "lab.toml", host, tmp_path)
    [problem] = err.value.problems
    assert "both use address 0" in problem.message
    lines = text.splitlines()
    slider = lines.index('id = "slider"')
    assert problem.line == lines.index("address = 0", slider) + 1


def test_one_bus_spelt_two_ways_is_one_bus(host: PluginHost, tmp_path: Path) -> None:
    """Two spellings of one sim:// line (its options in another order) reach one bus, so
    two instruments on one address of it are refused as on one spelling."""
    first, second = ("sim://elliptec?name=bus&devices=0:ELL14,1:ELL9",
                     "sim://elliptec?devices=0:ELL14,1:ELL9&name=bus")
    text = lab(slider_address="0")
    text = text.replace("sim://elliptec?devices=0:ELL14,1:ELL9", first, 1)
    text = text.replace("sim://elliptec?devices=0:ELL14,1:ELL9", second, 1)
    assert first in text and second in text
    assert host.register(sims_plugin, "daqhub-sims:sims", "daqhub-sims")  # serves sim://
    with pytest.raises(ConfigError, match="both use address 0"):
        parse(text, "lab.toml", host, tmp_path)


def test_sliders_take_no_velocity(host: PluginHost, tmp_path: Path) -> None:
    text = lab().replace('address = 1\n', 'address = 1\nvelocity = 50\n')
    with pytest.raises(ConfigError, match="unknown key 'velocity'"):
        parse(text, "lab.toml", host, tmp_path)
