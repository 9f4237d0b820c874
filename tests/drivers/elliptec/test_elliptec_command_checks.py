"""The commands an Elliptec module's Delegate forwards to its axis declare their arguments'
checks: ``daqhub validate`` refuses the routine step the axis would refuse (a drive power of
200 %, home direction 3, motor 3, ...), and the command refuses it before anything is sent,
naming the instrument, the command and the argument.

These steps passed validate; the routine failed when the step ran, after the steps before it
had run. A string for a move went on as far as the pulse arithmetic (a bare TypeError).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from elliptec_scripted import ScriptedBus, call

from daqhub.config import ConfigError, parse
from daqhub.host import PluginHost

pytestmark = pytest.mark.timeout(20)
FLAVORS = ("v2", "v4")

LAB = """
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "socket://localhost:40133"
address = 0

[[routines]]
instrument = "rot"
steps = [
    ["set_velocity", 200],
    ["home", 30, 3],
    ["isolate", 0],
    ["motor_info", 3],
    ["set_frequency", 1.0, 80000.0],
    ["change_address", 16],
    ["set_velocity", 60], ["home", 30, 1], ["motor_info", 2], ["move_absolute", 45.0],
]
"""

REFUSALS = {
    '["set_velocity", 200]': "set_velocity: velocity is a whole percentage 1-100, got 200",
    '["home", 30, 3]': "home: direction must be one of 0, 1, got 3",
    '["isolate", 0]': "isolate: isolate takes whole minutes 1-255, got 0",
    '["motor_info", 3]':
        "motor_info: motor is 1 or 2 (i2/f2/b2/s2 only on two-motor modules), got 3",
    '["set_frequency", 1.0, 80000.0]': "set_frequency: frequency must be 3600..14740000 Hz "
                                       "(or None for the factory value), got 1.0",
    '["change_address", 16]': "change_address: bus address must be 0-15, got 16",
}


def test_validate_refuses_each_step_the_axis_would_refuse(host: PluginHost) -> None:
    with pytest.raises(ConfigError) as info:
        parse(LAB, "lab.toml", host)
    lines = LAB.splitlines()
    expected = {(lines.index(f"    {step},") + 1,
                 f"routine of rot, step {k} {json.loads(step)!r}: {why}")
                for k, (step, why) in enumerate(REFUSALS.items(), 1)}
    assert {(p.line, p.message) for p in info.value.problems} == expected


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
@pytest.mark.parametrize("step", list(REFUSALS))
def test_the_command_refuses_it_the_same_way_and_sends_nothing(
        rotator: tuple[Any, ScriptedBus, str], step: str) -> None:
    inst, device, flavor = rotator
    name, *args = json.loads(step)
    with pytest.raises(ValueError) as info:
        call(inst, flavor, name, *args)
    assert str(info.value) == f"rot: {REFUSALS[step]}"
    assert device.received == []


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
@pytest.mark.parametrize(("name", "argument"), [("move_absolute", "position"),
                                                ("move_relative", "distance"),
                                                ("set_jog_step", "step")])
def test_a_move_by_a_string_is_refused_naming_the_argument(
        rotator: tuple[Any, ScriptedBus, str], name: str, argument: str) -> None:
    inst, device, flavor = rotator
    with pytest.raises(ValueError) as info:
        call(inst, flavor, name, "45")
    assert str(info.value) == f"rot: {name}: {argument} must be a float, got '45'"
    assert device.received == []
