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

import numpy as np
import pytest

from daqhub.commands import argument_problem
from daqhub.config import ConfigError, parse
from daqhub.host import PluginHost
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
    ["jog", "up"],
    ["move_to_limit", 1],
    ["set_limits", 10, -10],
    ["define_position", 0], ["move_absolute", 25.5], ["set_limits", -10, 10],
    ["jog", "+"], ["move_to_limit", "-"],
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
    '["jog", "up"]': "jog: direction must be one of '+', '-', got 'up'",
    '["move_to_limit", 1]': "move_to_limit: direction must be one of '+', '-', got 1",
    '["set_limits", 10, -10]':
        "set_limits: limits must be [left, right] with left < right, got [10, -10]",
}


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
                    ("stage", 4, '["set_limits", -1, 1e15]'),
                    ("stage", 5, '["jog", "up"]'), ("stage", 6, '["move_to_limit", 1]'),
                    ("stage", 7, '["set_limits", 10, -10]')]}
    assert {(p.line, p.message) for p in info.value.problems} == expected


def call(inst: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    result = getattr(inst, name)(*args, **kwargs)
    return asyncio.run(result) if inspect.isawaitable(result) else result


@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize(("type_name", "config", "step"), [
    ("newport.1830c", {}, '["set_range", 99]'),
    ("newport.1830c", {}, '["set_filter", "turbo"]'),
    ("newport.1830c", {}, '["set_units", "mW"]'),
    ("newport.esp300", {"axis": 1}, '["define_position", 1e13]'),
    ("newport.esp300", {"axis": 1}, '["move_absolute", -2e12]'),
    ("newport.esp300", {"axis": 1}, '["set_limits", -1, 1e15]'),
    ("newport.esp300", {"axis": 1}, '["jog", "up"]'),
    ("newport.esp300", {"axis": 1}, '["move_to_limit", 1]'),
    ("newport.esp300", {"axis": 1}, '["set_limits", 10, -10]'),
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


CLEAR = (b"TB?\r", b"0, 4410, NO ERROR DETECTED\r\n")
STATUS_CLEAR = (b"Q?\n", b"0\n")  # the 1830-C's status byte: no error


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_numpy_numbers_pass_validate_and_are_sent(host: PluginHost, daqhub_host: Any,
                                                  flavor: str) -> None:
    """A script's ``np.arange`` positions and float32 values: the range checks refused them
    (``position must be a number ..., got np.int64(5)``), though they are numbers."""
    steps: list[tuple[str, str, Any, bytes]] = [
        ("newport.esp300", "move_absolute", np.int64(5), b"1PA5\r"),
        ("newport.esp300", "move_relative", np.float32(2.5), b"1PR2.5\r"),
        ("newport.esp300", "define_position", np.int64(0), b"1DH0\r"),
        ("newport.esp300", "set_velocity", np.float32(2.5), b"1VA2.5\r"),
        ("newport.1830c", "set_range", np.int64(3), b"R3\n"),
    ]
    for type_name, name, value, sent in steps:
        itype = host.instrument_type(type_name, flavor)
        assert argument_problem(itype, name, (value,)) is None, (name, value)
        esp = type_name == "newport.esp300"
        line = ScriptedPort([(sent, b""), CLEAR if esp else STATUS_CLEAR])
        inst = scripted_instrument(daqhub_host, type_name, flavor, line,
                                   {"axis": 1} if esp else {}, "dut")
        call(inst, name, value)
        line.assert_done()


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_arguments_by_name_are_checked_and_sent(host: PluginHost, daqhub_host: Any,
                                                flavor: str) -> None:
    """``define_position(position=0)`` as its signature says: validate and the call refused
    it (``Command.check() got an unexpected keyword argument 'position'``)."""
    itype = host.instrument_type("newport.esp300", flavor)
    assert argument_problem(itype, "define_position", (), {"position": 0}) is None
    assert argument_problem(itype, "jog", (), {"direction": "up"})[0] == (  # type: ignore[index]
        REFUSALS['["jog", "up"]'])
    assert argument_problem(itype, "set_limits", (), {"left": 10, "right": -10})[0] == (  # type: ignore[index]
        REFUSALS['["set_limits", 10, -10]'])
    line = ScriptedPort([(b"1DH0\r", b""), CLEAR, (b"1MV-\r", b""), CLEAR])
    inst = scripted_instrument(daqhub_host, "newport.esp300", flavor, line, {"axis": 1}, "dut")
    call(inst, "define_position", position=0)
    call(inst, "jog", direction="-")
    with pytest.raises(ValueError) as info:
        call(inst, "set_limits", left=10, right=-10)
    assert str(info.value) == "dut: " + REFUSALS['["set_limits", 10, -10]']
    line.assert_done()


def test_the_lab_files_limits_are_refused_by_the_same_rule(daqhub_host: Any) -> None:
    with pytest.raises(ValueError) as info:
        scripted_instrument(daqhub_host, "newport.esp300", "v2", ScriptedPort([]),
                            {"axis": 1, "limits": [10, -10]}, "dut")
    assert str(info.value) == ("dut: ESP300 limits must be [left, right] with left < right, "
                               "got [10, -10]")


def test_validate_refuses_the_lab_files_limits_by_the_same_rule(host: PluginHost) -> None:
    """``limits = [10, -10]`` passed ``validate``; the run's instrument then never
    connected (its ``__init__`` refused them)."""
    lab = ('[[v2.instruments]]\nid = "stage"\ntype = "newport.esp300"\n'
           'port = "socket://localhost:40132"\naxis = 1\nlimits = [10, -10]\n')
    with pytest.raises(ConfigError) as info:
        parse(lab, "lab.toml", host)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (6, "ESP300 limits must be [left, right] with left < right, got [10, -10] "
            "(from plugin daqhub-newport)")]
    parse(lab.replace("[10, -10]", "[-10, 10]"), "lab.toml", host)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_a_keyword_the_command_does_not_take_is_named(host: PluginHost, flavor: str) -> None:
    """``define_position(pos=0)`` was "takes 1 argument (position), got 0"."""
    itype = host.instrument_type("newport.esp300", flavor)
    assert argument_problem(itype, "define_position", (), {"pos": 0}) == (
        "define_position takes 1 argument (position): got an unexpected keyword argument "
        "'pos'", "fix the arguments")
    assert argument_problem(itype, "define_position", (1,), {"position": 0}) == (
        "define_position takes 1 argument (position): multiple values for argument "
        "'position'", "fix the arguments")
