"""The same scripted session through v2 and v4 gives the same data and the same answers.

Each flavor gets its own simulator started identically; the 1830-C runs on a manual clock
with seeded noise, so even noisy readings must match sample for sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from newport_helpers import Build, advance, manual_clock_sim, run, sim_url

from daqhub.instrument import DriverError
from daqhub.measurement import UnifiedMeasurement
from daqhub.plugins.converters import batch_to_rows

pytestmark = pytest.mark.timeout(30)


def rows_of(samples: list[Any]) -> list[tuple[Any, ...]]:
    """What must agree: channel, value (type included), unit, metadata (not the timestamp)."""
    out = []
    for s in samples:
        rows = batch_to_rows(s) if hasattr(s, "schema") else [UnifiedMeasurement.from_v2(s)]
        for r in rows:
            out.append((r.instrument_id, r.channel, r.data, dict(r.metadata)))
    return out


Step = tuple[str, tuple[Any, ...]]


def play(inst: Any, flavor: str, steps: list[Step], tick: Callable[[], None]
         ) -> tuple[list[Any], list[Any]]:
    """Run ``steps`` (method name, args; ``tick`` advances the simulator) on either flavor.

    Returns the samples of every ``read`` and the answer of every other step, a DriverError
    recorded as ``("error", command, code)``. v2 runs in this thread, v4 in an event loop.
    """
    samples: list[Any] = []
    answers: list[Any] = []

    def record(name: str, result: Any) -> None:
        if name == "read":
            samples.extend(result)
        else:
            answers.append(result)

    if flavor == "v2":
        inst.connect()
        for name, args in steps:
            if name == "tick":
                tick()
                continue
            try:
                record(name, getattr(inst, name)(*args))
            except DriverError as exc:
                answers.append(("error", exc.command, exc.code))
        return samples, answers

    async def script() -> None:
        await inst.start()
        for name, args in steps:
            if name == "tick":
                tick()
                continue
            try:
                record(name, await getattr(inst, name)(*args))
            except DriverError as exc:
                answers.append(("error", exc.command, exc.code))

    run(script(), timeout=20)
    return samples, answers


# ------------------------------------------------------------------ 1830-C
METER_OPTIONS = {"noise": 0.01, "seed": 7, "power": 1e-6}


def meter_script(flavor: str, build: Build) -> tuple[list[Any], list[Any]]:
    """Steps as ``(method, args)``; reads and advances of the device clock between them."""
    url, clock = manual_clock_sim("newport1830c", **METER_OPTIONS)
    inst = build("newport.1830c", flavor, url, {"units": "W", "filter": "fast"}, "meter")
    steps: list[Step] = [
        ("read", ()), ("tick", ()), ("read", ()), ("set_wavelength", (800,)), ("tick", ()),
        ("read", ()), ("set_units", ("dBm",)), ("power", ()), ("read", ()), ("units", ()),
        ("set_range", (3,)), ("tick", ()), ("read", ()), ("set_range", (0,)), ("tick", ()),
        ("tick", ()), ("read", ()), ("set_wavelength", (3000,)), ("status", ()),
    ]
    return play(inst, flavor, steps, lambda: advance(url, clock, 0.2))


def test_meter_v2_and_v4_give_the_same_readings(build: Build) -> None:
    samples2, answers2 = meter_script("v2", build)
    samples4, answers4 = meter_script("v4", build)
    rows2, rows4 = rows_of(samples2), rows_of(samples4)
    assert rows2 == rows4
    assert answers2 == answers4
    assert len(rows2) == 6
    assert any(r[3] for r in rows2), "the range-3 reading should have been flagged"
    assert ("error", "W3000", 1) in answers2
    assert len({r[2].value for r in rows2}) > 2  # the noise is really there


# ------------------------------------------------------------------ ESP300
def esp_script(flavor: str, build: Build) -> tuple[list[Any], list[Any]]:
    url = sim_url("esp300", speed_scale=10)
    ax = build("newport.esp300", flavor, url, {"axis": 1, "limits": [-5, 5]}, "stage")
    steps: list[Step] = [
        ("read", ()), ("set_velocity", (50,)), ("velocity", ()), ("move_absolute", (2,)),
        ("wait_until_done", (5,)), ("read", ()), ("move_relative", (-0.75,)),
        ("wait_until_done", (5,)), ("read", ()), ("move_absolute", (7,)),
        ("wait_until_done", (5,)), ("read", ()), ("home", (5,)), ("read", ()),
        ("set_acceleration", (1e9,)), ("limits", ()), ("units", ()),
    ]
    return play(ax, flavor, steps, lambda: None)


def test_esp300_v2_and_v4_give_the_same_positions_and_errors(build: Build) -> None:
    samples2, answers2 = esp_script("v2", build)
    samples4, answers4 = esp_script("v4", build)
    rows2 = rows_of(samples2)
    assert rows2 == rows_of(samples4)
    assert answers2 == answers4
    positions = [r[2].value for r in rows2]
    assert positions[:3] == [0.0, 2.0, 1.25] and positions[4] == 0.0
    assert 1.25 <= positions[3] <= 5.0  # refused, or stopped at the +5 software limit
    assert ("error", "1PA7", 106) in answers2
    assert ("error", "1AC1000000000", 111) in answers2
