"""A v2 and a v4 SCPI instrument on the SAME VISA resource, polled at full speed together.

SCPI pairs replies with queries only by order, so any interleaving of one
instrument's write with the other's read would show up as a wrong value (the
shared pyvisa-sim device answers ``ID<n>?`` with ``R<n>``: a reply names its
query) or as a protocol error. Both must be absent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from daqhub.plugins.converters import batch_to_rows
from daqhub_sims import visa_files

pytestmark = pytest.mark.timeout(30)

RUN_S = 2.0


def id_readings(numbers: list[int]) -> list[dict[str, str]]:
    return [{"name": f"n{n}", "query": visa_files.shared_dialogue(n)[0], "parse": "regex",
             "regex": r"^R(\d+)$"} for n in numbers]


def run_together(v2: Any, v4: Any, check_v2: Callable[[list[Any]], None],
                 check_v4: Callable[[list[Any]], None], v2_extra: Callable[[], None],
                 v4_extra: Callable[[], Any]) -> tuple[int, int, list[BaseException]]:
    """Poll both flavors for RUN_S seconds; returns poll counts and every error raised."""
    errors: list[BaseException] = []
    v2_polls = 0
    start = threading.Event()

    def v2_loop() -> None:
        nonlocal v2_polls
        try:
            v2.connect()
            start.wait(5.0)
            deadline = time.monotonic() + RUN_S
            while time.monotonic() < deadline:
                check_v2(v2.read())
                v2_extra()
                v2_polls += 1
                # Paced like the V2 runtime at a high poll rate (500 Hz). Unpaced, a thread
                # hammering pure-Python pyvisa-sim keeps the GIL and starves the event loop
                # (see docs/architecture.md, "Fairness between flavors").
                time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    async def v4_loop() -> int:
        await v4.start()
        start.set()
        polls = 0
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            check_v4([r for b in await v4.read() for r in batch_to_rows(b)])
            await v4_extra()
            polls += 1
        return polls

    thread = threading.Thread(target=v2_loop, name="v2-poller")
    thread.start()
    try:
        v4_polls = asyncio.run(v4_loop())
    except BaseException as exc:
        errors.append(exc)
        v4_polls = 0
    finally:
        start.set()
        thread.join(RUN_S + 10.0)
    assert not thread.is_alive(), "the v2 poller did not finish"
    return v2_polls, v4_polls, errors


def test_v2_and_v4_custom_on_one_pyvisa_sim_resource(sim_library, open_resource,
                                                     build) -> None:
    res = open_resource(visa_files.SHARED_RESOURCE, sim_library)
    v2_numbers, v4_numbers = [1, 2, 3], [40, 41, 42, 43]
    v2 = build("v2", "scpi.custom", res, "left", readings=id_readings(v2_numbers))
    v4 = build("v4", "scpi.custom", res, "right", readings=id_readings(v4_numbers))
    seen_values: dict[str, set[float]] = {"left": set(), "right": set()}

    def check(rows: list[Any], numbers: list[int]) -> None:
        assert [r.channel for r in rows] == [f"n{n}" for n in numbers]
        assert [float(r.data.value) for r in rows] == [float(n) for n in numbers]
        seen_values[rows[0].instrument_id].update(float(r.data.value) for r in rows)

    def v2_extra() -> None:
        assert v2.query("ID7?") == "R7"

    async def v4_extra() -> None:
        assert await v4.query("ID63?") == "R63"

    v2_polls, v4_polls, errors = run_together(
        v2, v4, lambda rows: check(rows, v2_numbers), lambda rows: check(rows, v4_numbers),
        v2_extra, v4_extra)
    assert errors == []
    assert v2_polls > 50 and v4_polls > 50, (v2_polls, v4_polls)
    stats = res.stats()
    assert stats["errors"] == 0 and stats["timeouts"] == 0
    assert seen_values == {"left": {1.0, 2.0, 3.0}, "right": {40.0, 41.0, 42.0, 43.0}}


def test_v2_and_v4_dmm_on_one_tcp_resource(tcp_server, open_resource, build) -> None:
    server = tcp_server("dmm", seed=5)
    res = open_resource(server.resource, "@py")
    v2 = build("v2", "scpi.dmm", res, "dmm_v2", function=["VOLT:DC", "RES"])
    v4 = build("v4", "scpi.dmm", res, "dmm_v4", function=["CURR:DC", "VOLT:DC"])
    expected = {"voltage": 1.0, "resistance": 1e3, "current": 1e-3}

    def check(rows: list[Any], channels: list[str]) -> None:
        assert [r.channel for r in rows] == channels
        for r in rows:
            assert float(r.data.value) == pytest.approx(expected[r.channel], rel=1e-3)

    def v2_extra() -> None:
        assert v2.query("*IDN?") == "SIM,DMM1,TCP0001,1.0"

    async def v4_extra() -> None:
        assert await v4.query("SYST:VERS?") == "1999.0"

    v2_polls, v4_polls, errors = run_together(
        v2, v4, lambda rows: check(rows, ["voltage", "resistance"]),
        lambda rows: check(rows, ["current", "voltage"]), v2_extra, v4_extra)
    assert errors == []
    assert v2_polls > 20 and v4_polls > 20, (v2_polls, v4_polls)
    assert res.stats()["errors"] == 0
    with server.locked() as sim:
        assert sim.errors == []
