"""Both flavors against the simulated Elliptec bus: identity, moves, jogs, settings, addresses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from daqhub.capabilities import missing_methods
from daqhub.instrument import DriverError
from daqhub.measurement import UnifiedMeasurement
from daqhub.plugins.converters import batch_to_rows

pytestmark = pytest.mark.timeout(30)

FLAVORS = ("v2", "v4")


class Drive:
    """Calls an instrument's methods the same way whatever its flavor (v4: one asyncio.run)."""

    def __init__(self, inst: Any, flavor: str) -> None:
        self.inst = inst
        self.flavor = flavor

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.flavor == "v4" and name == "connect":
            name = "start"
        fn = getattr(self.inst, name)
        if self.flavor == "v2":
            return fn  # type: ignore[no-any-return]
        return lambda *args, **kwargs: asyncio.run(fn(*args, **kwargs))

    def rows(self) -> list[UnifiedMeasurement]:
        """One poll as unified rows."""
        if self.flavor == "v2":
            return [UnifiedMeasurement.from_v2(m) for m in self.inst.read()]
        return [row for batch in asyncio.run(self.inst.read()) for row in batch_to_rows(batch)]

    def sample(self) -> tuple[float, bool]:
        [row] = self.rows()
        return float(row.data.value), bool(row.metadata["moving"])


@pytest.fixture
def device(build: Callable[..., Any], bus_url: Callable[..., str]) -> Callable[..., Drive]:
    def make(type_name: str, flavor: str, address: int = 0, *, url: str | None = None,
             devices: str = "0:ELL14,1:ELL9,2:ELL20,3:ELL6", instrument_id: str = "dev",
             **config: Any) -> Drive:
        inst = build(url or bus_url(devices), type_name, flavor, instrument_id,
                     address=address, **config)
        return Drive(inst, flavor)

    return make


@pytest.mark.parametrize("flavor", FLAVORS)
def test_rotation_mount_moves_in_degrees(device: Callable[..., Drive], flavor: str) -> None:
    rot = device("elliptec.ell14", flavor)
    rot.connect()
    assert rot.identity()["model"] == "ELL14"
    assert rot.sample() == (0.0, False)
    rot.move_absolute(90)
    assert rot.wait_until_done(5) == pytest.approx(90.0)
    assert rot.is_moving() is False
    rot.move_relative(-1)
    assert rot.wait_until_done(5) == pytest.approx(89.0, abs=0.01)
    assert rot.position() == pytest.approx(89.0, abs=0.01)
    assert rot.home(5) == pytest.approx(0.0)
    assert rot.sample() == (pytest.approx(0.0), False)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_linear_stage_moves_in_mm_and_refuses_beyond_travel(device: Callable[..., Drive],
                                                             flavor: str) -> None:
    stage = device("elliptec.ell20", flavor, 2)
    stage.connect()
    stage.move_absolute(10)
    assert stage.wait_until_done(5) == pytest.approx(10.0)
    stage.move_absolute(70)  # travel is 60 mm
    with pytest.raises(DriverError) as err:
        stage.wait_until_done(5)
    assert err.value.code == "0C" and err.value.instrument_id == "dev"
    assert err.value.command == "2ma00011800" and "out of range" in err.value.message
    assert stage.status() == 0  # the driver read the sticky code, so it is clear again
    assert stage.position() == pytest.approx(10.0)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_four_position_slider_moves_between_slots(device: Callable[..., Drive],
                                                  flavor: str) -> None:
    slider = device("elliptec.ell9", flavor, 1)
    slider.connect()
    slider.move_absolute(3)
    assert slider.wait_until_done(5) == 3.0
    slider.jog_backward()
    assert slider.wait_until_done(5) == 2.0
    slider.move_relative(-2)
    assert slider.wait_until_done(5) == 0.0
    for bad in (4, 1.5, -1):
        with pytest.raises(ValueError, match="slots 0..3"):
            slider.move_absolute(bad)
    with pytest.raises(ValueError, match="slider"):
        slider.jog_step()
    assert slider.home(5) == 0.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_two_position_slider_jogs_between_its_slots(device: Callable[..., Drive],
                                                    flavor: str) -> None:
    slider = device("elliptec.ell6", flavor, 3)
    slider.connect()
    slider.jog_forward()
    assert slider.wait_until_done(5) == 1.0
    assert slider.sample() == (1.0, False)
    slider.jog_backward()
    assert slider.wait_until_done(5) == 0.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_polls_during_a_move_report_the_last_position_and_moving(
        device: Callable[..., Drive], bus_url: Callable[..., str], flavor: str) -> None:
    rot = device("elliptec.ell14", flavor, url=bus_url("0:ELL14", speed_scale="0.25"))
    rot.connect()
    rot.move_absolute(90)  # ~0.8 s at this speed
    assert rot.sample() == (0.0, True)
    assert rot.is_moving() is True
    assert rot.position() == 0.0  # the module is not asked while it moves
    assert rot.wait_until_done(5) == pytest.approx(90.0)
    assert rot.sample() == (pytest.approx(90.0), False)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_query_during_a_move_waits_for_its_end_and_keeps_it(
        device: Callable[..., Drive], bus_url: Callable[..., str], flavor: str) -> None:
    rot = device("elliptec.ell14", flavor, url=bus_url("0:ELL14", speed_scale="0.5"))
    rot.connect()
    rot.move_absolute(90)
    assert rot.velocity() == 100  # not sent until the move has ended
    assert rot.is_moving() is False
    assert rot.wait_until_done(1) == pytest.approx(90.0)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_velocity_and_jog_step(device: Callable[..., Drive], flavor: str) -> None:
    rot = device("elliptec.ell14", flavor, velocity=60)
    rot.connect()
    assert rot.velocity() == 60
    rot.set_velocity(100)
    assert rot.velocity() == 100
    with pytest.raises(ValueError, match="1-100"):
        rot.set_velocity(0)
    rot.set_jog_step(5.0)
    assert rot.jog_step() == pytest.approx(5.0, abs=0.01)
    rot.jog_forward()
    assert rot.wait_until_done(5) == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_stop_ends_a_continuous_jog(device: Callable[..., Drive], flavor: str) -> None:
    rot = device("elliptec.ell14", flavor)
    rot.connect()
    rot.set_jog_step(0)  # ELL14: jog step 0 jogs until `st`
    rot.jog_forward()
    assert rot.is_moving() is True
    rot.stop()
    assert rot.wait_until_done(5) > 0.0
    assert rot.is_moving() is False


@pytest.mark.parametrize("flavor", FLAVORS)
def test_home_on_start(device: Callable[..., Drive], bus_url: Callable[..., str],
                       flavor: str) -> None:
    url = bus_url("0:ELL14")
    first = device("elliptec.ell14", "v2", url=url, instrument_id="first")
    first.connect()
    first.move_absolute(45)
    first.wait_until_done(5)
    first.close()
    rot = device("elliptec.ell14", flavor, url=url, home_on_start=True)
    rot.connect()
    assert rot.sample() == (pytest.approx(0.0), False)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_change_address_answers_from_the_new_address(device: Callable[..., Drive],
                                                     bus_url: Callable[..., str],
                                                     flavor: str) -> None:
    url = bus_url("0:ELL14,1:ELL9")
    rot = device("elliptec.ell14", flavor, url=url)
    rot.connect()
    assert rot.change_address(5) == "5"
    assert rot.identity()["address"] == "5"
    rot.move_absolute(30)
    assert rot.wait_until_done(5) == pytest.approx(30.0, abs=0.01)
    with pytest.raises(DriverError, match="already used by instrument 'dev'"):
        device("elliptec.ell9", "v2", 5, url=url, instrument_id="other").connect()
    with pytest.raises(DriverError, match="already used by instrument 'slider'"):
        slider = device("elliptec.ell9", "v2", 1, url=url, instrument_id="slider")
        slider.connect()
        rot.change_address(1)
    rot.change_address(0)
    rot.save_user_data()
    assert rot.position() == pytest.approx(30.0, abs=0.01)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_change_address_onto_a_module_the_lab_does_not_use_is_refused(
        device: Callable[..., Drive], bus_url: Callable[..., str], flavor: str) -> None:
    """Accepted, both modules would execute every command and their replies collide."""
    url = bus_url("0:ELL14,1:ELL9")
    rot = device("elliptec.ell14", flavor, url=url)
    rot.connect()
    rot.move_absolute(30)
    rot.wait_until_done(5)
    with pytest.raises(DriverError) as err:
        rot.change_address(1)
    assert err.value.command == "0ca1"
    assert "address 1 is in use" in err.value.message and "ELL9 (serial" in err.value.message
    assert rot.identity()["address"] == "0"  # nothing was re-addressed
    assert rot.position() == pytest.approx(30.0, abs=0.01)
    slider = device("elliptec.ell9", "v2", 1, url=url, instrument_id="slider")
    slider.connect()  # address 1 was not left claimed by the refused change
    assert slider.position() == 0
    assert rot.change_address(5) == "5"  # a free address is still taken
    assert rot.position() == pytest.approx(30.0, abs=0.01)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_module_of_another_model_is_refused(device: Callable[..., Drive], flavor: str) -> None:
    wrong = device("elliptec.ell14", flavor, 1)
    with pytest.raises(DriverError) as err:
        wrong.connect()
    assert "answers as ELL9" in err.value.message and "ELL14" in err.value.message
    assert err.value.command == "1in"


def test_v2_and_v4_give_the_same_data_for_the_same_script(device: Callable[..., Drive],
                                                          bus_url: Callable[..., str]) -> None:
    def script(flavor: str) -> list[tuple[Any, ...]]:
        rot = device("elliptec.ell14", flavor, url=bus_url("0:ELL14"), instrument_id="rot")
        rot.connect()
        rows = rot.rows()
        for target in (90, 180.5, -45):
            rot.move_absolute(target)
            rot.wait_until_done(5)
            rows += rot.rows()
        rot.move_relative(-1)
        rot.wait_until_done(5)
        rows += rot.rows()
        rot.home(5)
        rows += rot.rows()
        return [(r.instrument_id, r.channel, r.data, dict(r.metadata)) for r in rows]

    v2, v4 = script("v2"), script("v4")
    assert v2 == v4
    # rotary wrap-around is the module's business, not the protocol's: compare modulo a turn
    assert [row[2].value % 360 for row in v2][:4] == pytest.approx([0.0, 90.0, 180.5, 315.0],
                                                                   abs=0.003)
    assert {row[2].unit for row in v2} == {"deg"}


@pytest.mark.parametrize("type_name", ["elliptec.ell14", "elliptec.ell20", "elliptec.ell9",
                                       "elliptec.ell6"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_type_implements_motion(device: Callable[..., Drive], type_name: str,
                                      flavor: str) -> None:
    inst = device(type_name, flavor).inst
    assert missing_methods(inst, "Motion") == []
    assert missing_methods(inst, "Readable") == []


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("call, words", [
    (lambda r: r.set_velocity(float("inf")), "velocity is a whole percentage 1-100, got inf"),
    (lambda r: r.move_relative(1e12), "cannot move by 1000000000000.0 deg: 398222222222222 "
                                      "pulses does not fit a signed 32-bit position"),
    (lambda r: r.set_jog_step(1e12), "cannot move by 1000000000000.0 deg"),
    (lambda r: r.set_home_offset(-1e12), "cannot move by -1000000000000.0 deg"),
    (lambda r: r.wait_until_done(float("nan")), "timeout must be a number of seconds"),
    (lambda r: r.home(float("inf")), "timeout must be a number of seconds"),
])
def test_values_no_module_can_take_are_refused_naming_the_instrument(
        device: Callable[..., Drive], flavor: str, call: Callable[[Drive], Any],
        words: str) -> None:
    """Infinite speeds and 32-bit overflows escaped as a bare OverflowError, or a
    ValueError without the instrument's name; a NaN wait compared past no deadline."""
    rot = device("elliptec.ell14", flavor)
    rot.connect()
    rot.move_absolute(45)
    assert rot.wait_until_done(5) == pytest.approx(45.0, abs=0.01)
    with pytest.raises(ValueError) as info:
        call(rot)
    assert str(info.value).startswith(f"{rot.inst.id}: ") and words in str(info.value)
    assert rot.position() == pytest.approx(45.0, abs=0.01) and rot.is_moving() is False
