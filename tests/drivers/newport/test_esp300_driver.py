"""The ESP300 axis driver against the simulated controller (``sim://esp300``).

Simulated motion takes real time; ``speed_scale`` makes it short so the whole file runs in
seconds. Assertions are what a user checks: where the stage ended up, in which unit, and
which controller error a refused command raises.
"""

from __future__ import annotations

import threading
import time

import pytest
from newport_helpers import Build, run, sim_url
from polling import wait_until

from daqhub.instrument import DriverError
from daqhub.measurement import Measurement, Scalar
from daqhub.plugins.converters import batch_to_rows
from daqhub_newport import DriverTimeoutError, Esp300AxisV2, Esp300AxisV4

pytestmark = pytest.mark.timeout(20)

ESP = "newport.esp300"
FAST = {"speed_scale": 10}  # VA 100 mm/s, AC 4000 mm/s^2


def axis_v2(build: Build, url: str, **config: object) -> Esp300AxisV2:
    ax = build(ESP, "v2", url, {"axis": 1, **config}, config.pop("id", "stage"))
    assert isinstance(ax, Esp300AxisV2)
    ax.connect()
    return ax


def test_connect_checks_units_powers_the_motor_and_applies_the_lab_settings(
        build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300", **FAST), velocity=5, acceleration=50,
                 limits=[-10, 10])
    assert ax.units() == "mm"
    assert ax.velocity() == 5.0 and ax.acceleration() == 50.0
    assert ax.limits() == (-10.0, 10.0)
    [m] = ax.read()
    assert isinstance(m, Measurement)
    assert (m.channel, m.data, m.metadata) == ("position", Scalar(0.0, "mm"), {"moving": False})
    ax.move_absolute(0.5)  # the motor is on: no "113 MOTOR NOT ENABLED"
    assert ax.wait_until_done(5) == 0.5


def test_units_that_disagree_with_the_lab_file_are_refused_or_switched(build: Build) -> None:
    url = sim_url("esp300", units=7)  # the axis reports degrees
    ax = build(ESP, "v2", url, {"axis": 1, "units": "mm"})
    with pytest.raises(DriverError) as info:
        ax.connect()
    assert info.value.code == "units" and "deg" in info.value.message
    assert info.value.command == "1SN?"
    ax = build(ESP, "v2", url, {"axis": 1, "units": "mm", "set_units": True}, "switching")
    ax.connect()
    assert ax.units() == "mm"


def test_a_rotation_stage_reads_in_degrees(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300", units=7, **FAST), units="deg")
    assert ax.channel("position").unit == "deg"
    ax.move_absolute(12.5)
    assert ax.wait_until_done(5) == 12.5
    [m] = ax.read()
    assert m.data == Scalar(12.5, "deg")


def test_moves_wait_and_report_motion(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300", speed_scale=3))  # a 3 mm move takes ~0.1 s
    ax.move_absolute(3)
    assert ax.is_moving()
    [m] = ax.read()
    assert m.metadata["moving"] is True and 0 <= m.data.value < 3
    assert ax.wait_until_done(5) == 3.0
    ax.move_relative(-1.25)
    assert ax.wait_until_done(5) == 1.75
    assert ax.read()[0].metadata == {"moving": False}


def test_stop_goes_through_the_urgent_lane_and_halts_the_axis(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300"), velocity=2)
    ax.move_absolute(20)  # 10 s at 2 mm/s
    urgent_before = ax.port.stats()["urgent"]
    ax.stop()
    assert ax.port.stats()["urgent"] == urgent_before + 1
    final = ax.wait_until_done(5)
    assert 0 < final < 1


def test_stop_overtakes_routine_traffic_queued_before_it(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300", **FAST))
    port = ax.port

    def wait_queued(depth: int) -> None:  # the gate's queue is only observable, not signalled
        wait_until(lambda: port.stats()["queue_depth"] >= depth,
                   f"{depth} commands queued behind the lease", timeout=5, every=0.001)

    with port.lease(owner="test holds the port"):
        mover = threading.Thread(target=ax.move_absolute, args=(10,))
        mover.start()
        wait_queued(1)
        stopper = threading.Thread(target=ax.stop)
        stopper.start()
        wait_queued(2)
    mover.join(5)
    stopper.join(5)
    # The stop ran first (nothing was moving yet), so the later move went all the way.
    assert ax.wait_until_done(5) == 10.0


def test_abort_stops_every_axis_at_once(build: Build) -> None:
    url = sim_url("esp300")
    x = axis_v2(build, url, id="x")
    y = build(ESP, "v2", url, {"axis": 2}, "y")
    y.connect()
    x.move_absolute(20)
    y.move_absolute(-20)
    x.abort()
    assert not x.is_moving() and not y.is_moving()  # no deceleration ramp to wait for
    assert 0 < x.position() < 1 and -1 < y.position() < 0


def test_stop_from_another_thread_ends_a_blocking_wait(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300"), velocity=2)
    ax.move_absolute(20)
    waiter_result: list[float] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(ax.wait_until_done(10)))
    waiter.start()
    ax.stop()
    waiter.join(5)
    assert not waiter.is_alive() and waiter_result[0] < 1


def test_home_finds_the_switch_and_resets_the_position(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300", home=1.5, **FAST), home_mode=2)
    ax.move_absolute(4)
    ax.wait_until_done(5)
    ax.home(timeout=5)
    assert ax.position() == 0.0
    assert not ax.is_moving()


def test_home_that_takes_too_long_stops_the_axis_and_raises(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300", home=5), home_mode=2)  # OH 2 mm/s: ~2.5 s
    t0 = time.monotonic()
    with pytest.raises(DriverTimeoutError) as info:
        ax.home(timeout=0.2)
    assert time.monotonic() - t0 < 1.5
    assert info.value.command == "1OR2" and "stopped" in info.value.message
    assert "stage" in str(info.value)
    with pytest.raises(DriverError) as aborted:  # the stop ended the search
        ax.wait_until_done(5)
    assert aborted.value.code == 120 and "HOMING ABORTED" in aborted.value.message
    assert not ax.is_moving()


def test_wait_timeout_names_the_motion(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300"), velocity=1)
    ax.move_absolute(10)
    with pytest.raises(DriverTimeoutError) as info:
        ax.wait_until_done(timeout=0.1)
    assert info.value.command == "1PA10" and "0.1 s" in info.value.message
    ax.stop()


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0])
def test_a_wait_that_could_not_end_is_refused_before_anything_moves(
        build: Build, timeout: float) -> None:
    """NaN never compared past the deadline: wait_until_done(nan) waited forever."""
    ax = axis_v2(build, sim_url("esp300", **FAST))
    ax.move_absolute(3)
    ax.wait_until_done(timeout=10)
    with pytest.raises(ValueError, match="stage: timeout must be a number of seconds"):
        ax.home(timeout)
    assert not ax.is_moving() and ax.position() == pytest.approx(3)  # OR was never sent
    ax.move_absolute(10)
    with pytest.raises(ValueError, match="stage: timeout must be a number of seconds"):
        ax.wait_until_done(timeout)
    ax.stop()


# ------------------------------------------------------------------ software limits
def test_moves_up_to_the_software_limits_are_the_controllers_to_judge(build: Build) -> None:
    """The driver refused moves the controller takes: ``3 * 0.1`` (0.30000000000000004) with
    a right limit of 0.3, though it goes out as ``1PA0.3``. The controller enforces its
    limits (as its ZS configures it): what lies beyond them it refuses itself, 106 on axis
    1. (What a move costs on the wire: test_esp300_wrappers_and_poll_cost.)"""
    ax = axis_v2(build, sim_url("esp300", **FAST), limits=[-0.3, 0.3])
    ax.move_absolute(3 * 0.1)
    assert ax.wait_until_done(5) == pytest.approx(0.3)
    with pytest.raises(DriverError) as info:
        ax.move_absolute(1e9)
    assert (info.value.command, info.value.code) == ("1PA1000000000", 106)


# ------------------------------------------------------------------ controller error codes
def _raw(command: str):  # noqa: ANN202 - a small step factory
    return lambda ax: ax.raw_command(command)


def _move_and_wait(target: float):  # noqa: ANN202
    def step(ax: Esp300AxisV2) -> None:
        ax.move_absolute(target)
        ax.wait_until_done(5)
    return step


@pytest.mark.parametrize("config, step, code, words", [
    ({}, _raw("1XX"), 6, "COMMAND DOES NOT EXIST"),
    ({}, _raw("1VAfast"), 7, "PARAMETER OUT OF RANGE"),
    ({}, _raw("PA5"), 37, "AXIS NUMBER MISSING"),
    ({}, _raw("1PA"), 38, "PARAMETER MISSING"),
    ({"motor_on": False}, _move_and_wait(1), 113, "MOTOR NOT ENABLED"),
    ({"motor_on": False}, lambda ax: ax.home(5), 120, "HOMING ABORTED"),
    ({}, _raw("1VA-1"), 101, "PARAMETER OUT OF RANGE"),  # set_velocity refuses it itself
    ({}, lambda ax: ax.set_velocity(1e6), 110, "VELOCITY"),
    ({}, lambda ax: ax.set_acceleration(1e9), 111, "ACCELERATION"),
    ({"limits": [-1, 1]}, _move_and_wait(5), 106, "POSITIVE SOFTWARE LIMIT"),
    ({"limits": [-1, 1]}, _move_and_wait(-5), 107, "NEGATIVE SOFTWARE LIMIT"),
    ({"limits": [-100, 100]}, _move_and_wait(40), 104, "POSITIVE HARDWARE LIMIT"),
])
def test_controller_errors_raise_with_code_and_message(
        build: Build, config: dict[str, object], step, code: int, words: str) -> None:
    ax = axis_v2(build, sim_url("esp300", **FAST), **config)
    with pytest.raises(DriverError) as info:
        step(ax)
    err = info.value
    assert err.code == code and words in err.message, str(err)
    assert err.instrument_id == "stage" and err.command
    ax.raw_query("1TP?")  # the FIFO was drained: the next exchange is clean
    assert ax.raw_query("TB?").startswith("0,")


def test_axis_out_of_range_is_error_9_at_connect(build: Build) -> None:
    ax = build(ESP, "v2", sim_url("esp300", axes=2), {"axis": 3, "reply_timeout": 0.1})
    with pytest.raises(DriverError) as info:
        ax.connect()
    assert info.value.code == 9 and info.value.command == "3SN?"


def test_a_refused_query_is_explained_by_the_controller(build: Build) -> None:
    ax = axis_v2(build, sim_url("esp300"), reply_timeout=0.1)
    with pytest.raises(DriverError) as info:
        ax.raw_query("1QQ?")
    assert info.value.code == 6 and info.value.command == "1QQ?"


def test_two_axes_share_one_port_and_get_their_own_errors(build: Build) -> None:
    url = sim_url("esp300", **FAST)
    x = axis_v2(build, url, id="x")
    y = build(ESP, "v2", url, {"axis": 2, "limits": [-100, 100]}, "y")
    y.connect()
    assert x.port is y.port
    y.move_absolute(40)  # runs into the +25 mm hardware limit: error 204, later
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not x.session.router.pending(2):
        x.read()  # only x polls: x drains y's 204 from the controller's FIFO
    assert x.session.router.pending(2) == 1
    assert "error_code" not in x.read()[0].metadata
    assert y.read()[0].metadata["error_code"] == 204  # ...and y gets it
    with pytest.raises(DriverError) as info:
        y.wait_until_done(5)
    assert info.value.code == 204
    x.move_absolute(1)
    assert x.wait_until_done(5) == 1.0  # x never saw y's error


# ------------------------------------------------------------------ v4 flavor
def test_v4_axis_moves_reads_and_stops(build: Build) -> None:
    ax = build(ESP, "v4", sim_url("esp300", **FAST), {"axis": 1}, "stage4")
    assert isinstance(ax, Esp300AxisV4)

    async def script() -> tuple[float, list, float, float]:
        await ax.start()
        await ax.move_absolute(2.5)
        final = await ax.wait_until_done(5)
        batches = await ax.read()
        await ax.set_velocity(2)
        await ax.move_absolute(20)
        await ax.stop()
        stopped = await ax.wait_until_done(5)
        await ax.home(5)
        homed = await ax.position()
        await ax.close()
        return final, batches, stopped, homed

    final, batches, stopped, homed = run(script())
    assert final == 2.5
    [row] = batch_to_rows(batches[0])
    assert (row.instrument_id, row.channel, row.data, row.metadata) == (
        "stage4", "position", Scalar(2.5, "mm"), {"moving": False})
    assert 2.5 < stopped < 3.5
    assert homed == 0.0


def test_v4_errors_are_driver_errors_too(build: Build) -> None:
    ax = build(ESP, "v4", sim_url("esp300", **FAST), {"axis": 1, "limits": [-1, 1]}, "s4")

    async def script() -> None:
        await ax.start()
        await ax.move_absolute(3)
        await ax.wait_until_done(5)

    with pytest.raises(DriverError) as info:
        run(script())
    assert info.value.code == 106
