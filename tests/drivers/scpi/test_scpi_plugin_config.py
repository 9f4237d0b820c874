"""Registration, capabilities and lab-file validation of the SCPI instrument types."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest

import daqhub.plugins.arrow
import daqhub.plugins.hdf5
import daqhub_scpi.plugin
from daqhub.capabilities import missing_methods
from daqhub.config import ConfigError, parse
from daqhub.host import PluginHost

SCPI_TYPES = {"scpi.dmm", "scpi.psu", "scpi.custom"}


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost(strict=True)
    h.register(daqhub_scpi.plugin, "daqhub-scpi:scpi", "daqhub-scpi", "0.1.0")
    h.register(daqhub.plugins.hdf5, "daqhub:hdf5", "daqhub", "0.1.0")
    h.register(daqhub.plugins.arrow, "daqhub:arrow", "daqhub", "0.1.0")
    return h


def test_entry_point_registers_every_profile_in_both_flavors() -> None:
    h = PluginHost()
    h.load_entry_points()
    ours = [p for p in h.problems if p.distribution == "daqhub-scpi"]
    assert ours == []
    types = h.instrument_types()
    for name in SCPI_TYPES:
        for flavor in ("v2", "v4"):
            t = types[(name, flavor)]
            assert t.transport == "visa"
            assert t.problems() == []
            assert h.type_owner(name, flavor).distribution == "daqhub-scpi"  # type: ignore[union-attr]


def test_declared_capabilities_are_implemented(host: PluginHost) -> None:
    for (name, flavor), t in host.instrument_types().items():
        cls = t.factory
        for capability in t.capabilities:
            assert missing_methods(cls, capability) == [], (name, flavor, capability)
        if flavor == "v4" and "PowerSupply" in t.capabilities:
            for method in ("set_output", "set_voltage", "set_current_limit", "voltage",
                           "current"):
                assert inspect.iscoroutinefunction(getattr(cls, method)), method
    assert "PowerSupply" in host.instrument_type("scpi.psu", "v2").capabilities  # type: ignore[union-attr]


LAB = """\
[daqhub]
output_dir = "data"

[[v2.instruments]]
id = "dmm"
type = "scpi.dmm"
resource = "GPIB0::5::INSTR"
function = ["VOLT:DC", "RES"]

[[v4.instruments]]
id = "psu"
type = "scpi.psu"
resource = "GPIB0::6::INSTR"
visa_backend = "@sim"
timeout_ms = 500
check_errors = false

[[v4.instruments]]
id = "cryo"
type = "scpi.custom"
resource = "TCPIP::10.0.0.7::5025::SOCKET"
check_errors = "commands"
read_termination = "\\r\\n"
init = ["*RST", "CONF:TEMP"]
readings = [
    {name = "temp", query = "MEAS:TEMP?", unit = "K", parse = "float"},
    {name = "heater", query = "HTR?", unit = "%", parse = "regex", regex = 'P=(\\S+)'},
    {name = "stage", query = "STAT?", parse = "csv[1]"},
    {name = "locked", query = "LOCK?", parse = "bool"},
    {name = "count", query = "CNT?", parse = "int"},
]
"""


def test_a_lab_file_with_all_profiles_validates(host: PluginHost, tmp_path: Path) -> None:
    lab = parse(LAB, "lab.toml", host, tmp_path)
    blocks = {i.id: i for f in lab.flavors.values() for i in f.instruments}
    cryo = blocks["cryo"]
    t = host.instrument_type("scpi.custom", "v4")
    assert t is not None
    chans = {c.name: (c.unit, c.dtype) for c in t.channels_for(cryo.block)}
    assert chans == {"temp": ("K", "float64"), "heater": ("%", "float64"),
                     "stage": ("", "float64"), "locked": ("", "bool"), "count": ("", "int64")}
    dmm_type = host.instrument_type("scpi.dmm", "v2")
    assert dmm_type is not None
    assert [(c.name, c.unit) for c in dmm_type.channels_for(blocks["dmm"].block)] == [
        ("voltage", "V"), ("resistance", "Ohm")]
    assert [c.name for c in dmm_type.channels_for({})] == ["voltage"]


def _problems(host: PluginHost, tmp_path: Path, block: str) -> list[str]:
    text = "[[v4.instruments]]\nid = \"x\"\nresource = \"GPIB0::9::INSTR\"\n" + \
        textwrap.dedent(block)
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("block, expected", [
    ('type = "scpi.custom"\n', "readings"),
    ('type = "scpi.custom"\nreadings = []\n', "readings"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?", parse = "decimal"}]\n',
     "parse"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?", parse = "regex"}]\n',
     "regex"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?", regex = "(x)"}]\n',
     "readings"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?", parse = "regex", '
     'regex = "T=\\\\S+"}]\n', "exactly one group"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?"}, {name = "t", query = "U?"}]\n',
     "used twice"),
    ('type = "scpi.custom"\nreadings = [{name = "a b", query = "T?"}]\n', "name"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?", units = "K"}]\n', "units"),
    ('type = "scpi.custom"\nreadings = [{name = "t", query = "T?"}]\ninit = "*RST"\n', "init"),
    ('type = "scpi.dmm"\nfunction = "VOLT:AC"\n', "function"),
    ('type = "scpi.dmm"\nfunction = ["RES", "RES"]\n', "function"),
    ('type = "scpi.psu"\ntimeout_ms = 0\n', "timeout_ms"),
    ('type = "scpi.psu"\ncheck_errors = "yes"\n', "check_errors"),
    ('type = "scpi.psu"\ncheck_errors = "sometimes"\n', "check_errors"),
    ('type = "scpi.psu"\nread_termination = "\\n\\n"\n', "read_termination"),
    ('type = "scpi.psu"\nterminator = "\\n"\n', "terminator"),
])
def test_bad_blocks_are_reported(host: PluginHost, tmp_path: Path, block: str,
                                 expected: str) -> None:
    problems = _problems(host, tmp_path, block)
    assert problems, block
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("lab.toml:") for p in problems), problems
