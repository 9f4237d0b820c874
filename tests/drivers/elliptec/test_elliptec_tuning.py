"""Motor frequencies, frequency search, home offset and isolation, byte for byte.

The exchanges are written from the protocol manual's text (the protocol reference): ``i1``
answers ``I1`` + 22 characters (loop, motor, current, ramps, forward and backward period;
frequency = 14 740 000 / period), ``f1``/``b1`` take a period with top nibble 8 (``8FFF`` =
factory) and answer ``GS00``, ``s1`` answers ``GS00`` when the search is done, ``go``/``so``
read and set the home offset (``HO`` + 8 hex), ``is`` + minutes isolates the module (no
replies meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from elliptec_scripted import ScriptedBus, call

from daqhub.instrument import DriverError
from daqhub_elliptec import plugin
from daqhub_elliptec.models import MODELS

pytestmark = pytest.mark.timeout(20)
FLAVORS = ("v2", "v4")


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
def test_motor_info_and_frequencies_from_i1(rotator: tuple[Any, ScriptedBus, str]) -> None:
    inst, device, flavor = rotator
    device.script["0i1"] = b"0I1100428FFFFFFFF00BD008B\r\n"  # the manual's example
    info = call(inst, flavor, "motor_info", 1)
    assert info["loop"] is True and info["motor_on"] is False
    assert info["current_a"] == pytest.approx(0x428 / 1866)
    assert info["ramp_up"] is None and info["ramp_down"] is None
    forward, backward = call(inst, flavor, "frequency")
    assert forward == pytest.approx(14_740_000 / 0xBD) and 77_000 < forward < 79_000
    assert backward == pytest.approx(14_740_000 / 0x8B)
    assert device.received == ["0i1", "0i1"]


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
def test_set_frequency_sends_periods_with_the_top_nibble_set(
        rotator: tuple[Any, ScriptedBus, str]) -> None:
    inst, device, flavor = rotator
    device.script.update({"0f180BD": b"0GS00\r\n", "0b18FFF": b"0GS00\r\n"})
    call(inst, flavor, "set_frequency", 14_740_000 / 0xBD, None)  # None: factory value
    assert device.received == ["0f180BD", "0b18FFF"]
    with pytest.raises(ValueError, match="frequency must be"):
        call(inst, flavor, "set_frequency", 1.0, None)
    with pytest.raises(ValueError, match="motor is 1 or 2"):
        call(inst, flavor, "set_frequency", None, None, 3)
    assert device.received == ["0f180BD", "0b18FFF"]  # refused values send nothing


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
def test_frequency_search_is_collected_like_a_move_then_reads_what_it_found(
        rotator: tuple[Any, ScriptedBus, str]) -> None:
    inst, device, flavor = rotator
    device.script.update({"0s1": b"0GS09\r\n0GS00\r\n", "0i1": b"0I1110428FFFFFFFF00C0008C\r\n",
                          "0gp": b"0PO00008C00\r\n"})
    forward, backward = call(inst, flavor, "search_frequency", 1, 5.0)
    assert (forward, backward) == (pytest.approx(14_740_000 / 0xC0),
                                   pytest.approx(14_740_000 / 0x8C))
    assert device.received[0] == "0s1" and "0i1" in device.received
    assert call(inst, flavor, "position") == pytest.approx(90.0)  # it may have moved


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
def test_a_failed_frequency_search_raises_its_status(
        rotator: tuple[Any, ScriptedBus, str]) -> None:
    inst, device, flavor = rotator
    device.script["0s1"] = b"0GS0B\r\n"
    with pytest.raises(DriverError) as err:
        call(inst, flavor, "search_frequency", 1, 5.0)
    assert (err.value.command, err.value.code) == ("0s1", "0B")


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
def test_home_offset_in_degrees(rotator: tuple[Any, ScriptedBus, str]) -> None:
    inst, device, flavor = rotator
    device.script.update({"0go": b"0HO00008C00\r\n", "0soFFFFFE72": b"0GS00\r\n"})
    assert call(inst, flavor, "home_offset") == pytest.approx(90.0)
    call(inst, flavor, "set_home_offset", -1.0)  # -398 pulses (the protocol reference's example)
    assert device.received == ["0go", "0soFFFFFE72"]


@pytest.mark.parametrize("rotator", FLAVORS, indirect=True)
def test_an_isolated_module_is_not_asked_until_it_listens_again(
        rotator: tuple[Any, ScriptedBus, str]) -> None:
    inst, device, flavor = rotator
    device.script["0is3C"] = b""  # no reply while isolated
    call(inst, flavor, "isolate", 60)
    assert device.received == ["0is3C"]
    rows = call(inst, flavor, "read")  # a poll reports the last known position, asks nothing
    assert len(rows) == 1 and device.received == ["0is3C"]
    with pytest.raises(DriverError, match="isolated") as err:
        call(inst, flavor, "position")
    assert err.value.code == "isolated"
    with pytest.raises(ValueError, match="1-255"):
        call(inst, flavor, "isolate", 0)


def test_home_offset_and_frequency_are_commands_of_every_flavor() -> None:
    for t in plugin.daqhub_instrument_types():
        for name in ("frequency", "set_frequency", "search_frequency", "home_offset",
                     "set_home_offset", "isolate", "motor_info"):
            assert callable(getattr(t.factory, name)), (t.name, t.flavor, name)


def test_every_known_model_is_a_lab_file_type_with_its_kind() -> None:
    for model in MODELS.values():
        name = f"elliptec.{model.name.lower()}"
        assert name in plugin.TYPES
        assert plugin.TYPES[name][1].startswith(f"Thorlabs {model.name} ")
        kind_words = {"rotary": "rotation mount", "linear": "linear stage", "slider": "slider"}
        assert kind_words[model.kind] in plugin.TYPES[name][1]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(("model", "target"), [("ELL16", 90.0), ("ELL17", 5.0),
                                               ("ELL18", 45.0), ("ELL21", 180.0)])
def test_the_newly_listed_models_connect_and_move_on_the_simulator(
        build: Callable[..., Any], bus_url: Callable[..., str], flavor: str, model: str,
        target: float) -> None:
    inst = build(bus_url(f"5:{model}"), f"elliptec.{model.lower()}", flavor, "m", address=5)
    call(inst, flavor, "connect")
    call(inst, flavor, "move_absolute", target)
    assert call(inst, flavor, "wait_until_done", 10.0) == pytest.approx(target, abs=0.01)
    assert call(inst, flavor, "settings")["model"] == model
