"""What `validate` finds before anything runs: one device under two names, type clashes the lab
settles with [daqhub.providers], and plugin declarations that would only fail at run time."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from daqhub.config import ConfigError, parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument
from daqhub.measurement import ChannelSpec
from daqhub.specs import InstrumentType

pytestmark = pytest.mark.timeout(30)


def _never(ctx):
    raise AssertionError("factory called during validation")


class Meter(V2Instrument):
    """A v2 class, for a plugin that wrongly registers it as v4."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def read(self): return []


def lab_text(tmp_path: Path, *blocks: tuple[str, dict[str, object]]) -> str:
    """A lab file of ``(flavor, keys)`` blocks; the first block's header is on line 4."""
    text = f'[daqhub]\noutput_dir = "{tmp_path / "out"}"\n'
    for flavor, keys in blocks:
        text += f"\n[[{flavor}.instruments]]\n" + "".join(
            f"{k} = {v!r}\n".replace("'", '"') for k, v in keys.items())
    return text


def two_lines(host: PluginHost, tmp_path: Path, first: str, second: str, extra: str = "") -> str:
    return f"""\
[daqhub]
output_dir = "{tmp_path / 'out'}"

[[v2.instruments]]
id = "one"
type = "acme.meter"
port = "{first}"

[[v2.instruments]]
id = "two"
type = "acme.stage"
port = "{second}"
{extra}
"""


def test_a_symlink_and_its_target_must_agree_on_the_line(host: PluginHost, tmp_path: Path) -> None:
    target = tmp_path / "ttyUSB7"
    target.touch()
    link = tmp_path / "usb-FTDI_FT232R_A1B2-if00-port0"
    link.symlink_to(target)
    lab = parse(two_lines(host, tmp_path, str(link), str(target)), "lab.toml", host, tmp_path)
    assert len(lab.instruments()) == 2  # same settings: one shared port, valid
    text = two_lines(host, tmp_path, str(link), str(target), "baudrate = 19200")
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    lines = text.splitlines()
    one, two = lines.index('id = "one"'), lines.index('id = "two"')  # 0-based: headers above
    assert problem.line == two
    assert f"line {one}" in problem.message and f"line {two}" in problem.message
    assert "baudrate=9600" in problem.message and "19200" in problem.message
    assert os.path.realpath(target) in problem.message


def _rival(name: str, flavor: str = "v2") -> types.SimpleNamespace:
    @hookimpl
    def daqhub_instrument_types():
        return [InstrumentType(name, flavor, "serial", _never,
                               [ChannelSpec("power", "scalar", "W")], "a rival meter")]
    return types.SimpleNamespace(daqhub_instrument_types=daqhub_instrument_types)


def test_a_type_two_distributions_declare_is_reported_where_the_lab_uses_it(
        host: PluginHost, tmp_path: Path) -> None:
    assert host.register(_rival("acme.meter"), "rival", "rival-dist", "2.5")
    text = two_lines(host, tmp_path, "sim://a", "sim://b")
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    assert problem.line == text.splitlines().index('type = "acme.meter"') + 1
    assert "acme-test 1.0" in problem.message and "rival-dist 2.5" in problem.message
    assert "flavor" not in problem.message  # no advice to move it: that would not help
    assert '[daqhub.providers] "acme.meter" = "acme-test"' in problem.suggestion

    for chosen, owner in (("rival-dist", "rival meter"), ("acme_test", "a power meter")):
        lab = parse(text.replace("[daqhub]", f'[daqhub]\nproviders = {{ "acme.meter" = '
                                              f'"{chosen}" }}'), "lab.toml", host, tmp_path)
        assert lab.providers == {"acme.meter": chosen}
        assert owner in host.instrument_type("acme.meter", "v2", chosen).description
    with pytest.raises(ConfigError, match="provider 'nobody' does not declare .*acme-test 1.0"):
        parse(text.replace("[daqhub]", '[daqhub]\nproviders = { "acme.meter" = "nobody" }'),
              "lab.toml", host, tmp_path)


def test_flavor_advice_only_when_true(host: PluginHost, tmp_path: Path) -> None:
    # acme.stage is v2 only; a rival adds a v4 one that clashes with nobody
    assert host.register(_rival("acme.stage", "v4"), "rival", "rival-dist", "2.5")
    text = two_lines(host, tmp_path, "sim://a", "sim://b").replace(
        '[[v2.instruments]]\nid = "two"', '[[v4.instruments]]\nid = "two"')
    lab = parse(text, "lab.toml", host, tmp_path)
    assert [i.flavor for i in lab.instruments()] == ["v2", "v4"]


def test_a_channels_function_is_called_and_checked_for_each_block(
        host: PluginHost, tmp_path: Path) -> None:
    @hookimpl
    def daqhub_instrument_types():
        return [
            InstrumentType("bad.dicts", "v2", "none", _never,
                           lambda cfg: [{"name": "x", "kind": "scalar", "unit": "V"}], "dicts"),
            InstrumentType("bad.raises", "v2", "none", _never,
                           lambda cfg: [ChannelSpec(cfg["missing"], "scalar", "V")], "raises"),
        ]
    host.register(types.SimpleNamespace(daqhub_instrument_types=daqhub_instrument_types),
                  "bad", "bad-dist", "0.1")
    text = lab_text(tmp_path, ("v2", {"id": "a", "type": "bad.dicts"}),
                    ("v2", {"id": "b", "type": "bad.raises"}))
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    found = {p.line: p.message for p in info.value.problems}
    assert set(found) == {4, 8}
    assert "'bad.dicts' (v2, from plugin bad-dist 0.1)" in found[4]
    assert "item 0 is a dict" in found[4]
    assert "'bad.raises'" in found[8] and "KeyError" in found[8]


def test_declaration_mistakes_are_reported_at_load_naming_plugin_and_type() -> None:
    @hookimpl
    def daqhub_instrument_types():
        return [
            InstrumentType("wrong.flavor", "v4", "none", Meter, [ChannelSpec("x", "scalar", "V")],
                           "a v2 class registered as v4"),
            InstrumentType("static.dicts", "v2", "none", Meter,
                           [{"name": "x"}], "channels as dicts"),  # type: ignore[list-item]
            InstrumentType("fine.meter", "v2", "none", Meter, [ChannelSpec("x", "scalar", "V")],
                           "fine"),
        ]
    host = PluginHost()
    host.register(types.SimpleNamespace(daqhub_instrument_types=daqhub_instrument_types),
                  "mixed", "mixed-dist", "0.3")
    assert set(host.instrument_types()) == {("fine.meter", "v2")}
    errors = {p.error for p in host.problems if p.distribution == "mixed-dist"}
    assert any("'wrong.flavor' (v4)" in e and "subclass V4Actor; Meter does not" in e
               for e in errors), errors
    assert any("'static.dicts' (v2)" in e and "item 0 is a dict" in e for e in errors), errors


def test_a_lab_check_that_raises_makes_the_lab_invalid(host: PluginHost, tmp_path: Path) -> None:
    @hookimpl
    def daqhub_validate_config(config):
        raise RuntimeError("calibration table unreadable")

    host.register(types.SimpleNamespace(daqhub_validate_config=daqhub_validate_config),
                  "checker", "checker-dist", "0.4")
    with pytest.raises(ConfigError) as info:
        parse(two_lines(host, tmp_path, "sim://a", "sim://b"), "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    assert "calibration table unreadable" in problem.message
    assert "checker-dist" in problem.message


def test_two_spellings_of_one_simulated_bus_are_one_device(tmp_path: Path) -> None:
    host = PluginHost()
    host.load_entry_points()  # daqhub-sims says which line a sim:// URL reaches
    x = {"id": "x", "type": "newport.esp300", "port": "sim://esp300?name=bench", "axis": 1}
    y = {**x, "id": "y", "port": "SIM://esp300?name=bench&latency=0.01", "axis": 2}
    lab = parse(lab_text(tmp_path, ("v2", x), ("v4", y)), "lab.toml", host, tmp_path)
    assert len(lab.instruments()) == 2
    with pytest.raises(ConfigError) as info:
        parse(lab_text(tmp_path, ("v2", x), ("v4", {**y, "baudrate": 9600})), "lab.toml", host,
              tmp_path)
    [problem] = info.value.problems
    assert "'y' (line 10) and instrument 'x' (line 4) share a port" in problem.message
    assert "reach the same device, sim://esp300?name=bench" in problem.message
    assert "baudrate=19200 at line 4 vs 9600 at line 10" in problem.message


def test_a_serial_port_and_a_visa_asrl_resource_on_one_device_are_refused(
        host: PluginHost, tmp_path: Path) -> None:
    target = tmp_path / "ttyUSB3"
    target.touch()
    link = tmp_path / "usb-FTDI_FT232R_C3D4-if00-port0"
    link.symlink_to(target)
    meter = {"id": "meter", "type": "acme.meter", "port": str(target)}
    dmm = {"id": "dmm", "type": "acme.dmm", "resource": f"ASRL{link}::INSTR"}
    text = lab_text(tmp_path, ("v2", meter), ("v4", dmm))
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", host, tmp_path)
    [problem] = info.value.problems
    assert problem.line == 9
    assert "'dmm' (line 9) opens" in problem.message and "'meter' (line 4)" in problem.message
    assert "as a VISA resource (@py)" in problem.message and "as a serial port" in problem.message
    assert f"both reach the device {os.path.realpath(target)}" in problem.message
    # two VISA entries on one device share one session; a simulator opens no device
    twice = lab_text(tmp_path, ("v4", dmm), ("v4", {**dmm, "id": "dmm2",
                                                    "resource": f"ASRL{target}::INSTR"}))
    assert len(parse(twice, "lab.toml", host, tmp_path).instruments()) == 2
    sim = lab_text(tmp_path, ("v2", meter), ("v4", {**dmm, "visa_backend": "@sim"}))
    assert len(parse(sim, "lab.toml", host, tmp_path).instruments()) == 2
