"""The 1830-C's set_range/set_filter/set_units and the ESP300's define_position and moves:
``daqhub validate`` refuses the routine step the command would refuse, and the command refuses
it before anything is sent, naming the instrument, the command, the argument and the limits.

These steps passed validate; the routine failed when the step ran, after the steps before it
had run (``["set_range", 99]``, ``["define_position", 1e13]``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import pytest

from daqhub.config import ConfigError, parse
from daqhub.host import PluginHost
from daqhub.plugins import arrow, hdf5
from daqhub_newport import plugin
from daqhub_sims.scripted import ScriptedPort, scripted_instrument

pytestmark = pytest.mark.timeout(20)

LAB = """
[[v2.instruments]]
id = "power"
type = "newport.1830c"
port = "socket://localhost:40131"

[[v4.instruments]]
id = "stage"
type = "newport.esp300"
port = "socket://localhost:40132"
axis = 1

[[routines]]
instrument = "power"
steps = [
    ["set_range", 99],
    ["set_filter", "turbo"],
    ["set_units", "mW"],
    ["set_range", 8], ["set_filter", "slow"], ["set_units", "dBm"],
]

[[routines]]
instrument = "stage"
steps = [
    ["define_position", 1e13],
    ["move_absolute", -2e12],
    ["move_relative", 5e12],
    ["set_limits", -1, 1e15],
    ["define_position", 0], ["move_absolute", 25.5], ["set_limits", -10, 10],
]
"""

REFUSALS = {
    '["set_range", 99]': "set_range: range_ must be a number from 0 to 8, got 99",
    '["set_filter", "turbo"]':
        "set_filter: speed must be one of 'slow', 'medium', 'fast', got 'turbo'",
    '["set_units", "mW"]': "set_units: units must be one of 'W', 'dB', 'dBm', 'REL', got 'mW'",
    '["define_position", 1e13]':
        "define_position: position must be a number from -1e+12 to 1e+12, got 10000000000000.0",
    '["move_absolute", -2e12]':
        "move_absolute: position must be a number from -1e+12 to 1e+12, got -2000000000000.0",
    '["move_relative", 5e12]':
        "move_relative: distance must be a number from -1e+12 to 1e+12, got 5000000000000.0",
    '["set_limits", -1, 1e15]':
        "set_limits: right must be a number from -1e+12 to 1e+12, got 1000000000000000.0",
}


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost(strict=True)
    h.register(plugin, "newport", "daqhub-newport", "0.1.0")
    h.register(hdf5, "hdf5", "daqhub", "")
    h.register(arrow, "arrow", "daqhub", "")
    return h


def test_validate_refuses_each_step_the_command_would_refuse(host: PluginHost) -> None:
    """Each refusal is on its step's line, names the instrument, the step, the command, the
    argument and what it may be; the allowed steps beside them pass."""
    with pytest.raises(ConfigError) as info:
        parse(LAB, "lab.toml", host)
    lines = LAB.splitlines()
    expected = {(lines.index(f"    {step},") + 1, f"routine of {iid}, step {k} "
                 f"{json.loads(step)!r}: {REFUSALS[step]}")
                for iid, k, step in [
                    ("power", 1, '["set_range", 99]'), ("power", 2, '["set_filter", "turbo"]'),
                    ("power", 3, '["set_units", "mW"]'),
                    ("stage", 1, '["define_position", 1e13]'),
                    ("stage", 2, '["move_absolute", -2e12]'),
                    ("stage", 3, '["move_relative", 5e12]'),
                    ("stage", 4, '["set_limits", -1, 1e15]')]}
    assert {(p.line, p.message) for p in info.value.problems} == expected


def call(inst: Any, name: str, *args: Any) -> Any:
    result = getattr(inst, name)(*args)
    return asyncio.run(result) if inspect.isawaitable(result) else result


@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize(("type_name", "config", "step"), [
    ("newport.1830c", {}, '["set_range", 99]'),
    ("newport.1830c", {}, '["set_filter", "turbo"]'),
    ("newport.1830c", {}, '["set_units", "mW"]'),
    ("newport.esp300", {"axis": 1}, '["define_position", 1e13]'),
    ("newport.esp300", {"axis": 1}, '["move_absolute", -2e12]'),
    ("newport.esp300", {"axis": 1}, '["set_limits", -1, 1e15]'),
])
def test_the_command_refuses_it_the_same_way_and_sends_nothing(
        daqhub_host: Any, flavor: str, type_name: str, config: dict[str, Any],
        step: str) -> None:
    name, *args = json.loads(step)
    line = ScriptedPort([])
    inst = scripted_instrument(daqhub_host, type_name, flavor, line, config, "dut")
    with pytest.raises(ValueError) as info:
        call(inst, name, *args)
    assert str(info.value) == f"dut: {REFUSALS[step]}"
    assert line.sent == []
