"""The same scripted sequence through the v2 class and the v4 actor gives the same data.

Compared as the unified stream the storage sees (``UnifiedMeasurement.from_v2`` for
v2, ``batch_to_rows`` for v4 batches): instrument, channel, value, dtype and unit;
only timestamps and the source tag may differ.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from daqhub.measurement import UnifiedMeasurement
from daqhub.plugins.converters import batch_to_rows
from daqhub_sims import visa_files

pytestmark = pytest.mark.timeout(20)


def key(r: UnifiedMeasurement) -> tuple[str, str, Any, str, str]:
    return (r.instrument_id, r.channel, r.data.value, np.asarray(r.data.value).dtype.name,  # type: ignore[union-attr]
            r.data.unit)


def test_custom_profile_on_pyvisa_sim(sim_library, open_resource, build) -> None:
    """Set-points read back through a custom profile are deterministic in pyvisa-sim."""
    readings = [
        {"name": "vset", "query": "VOLT?", "unit": "V"},
        {"name": "iset", "query": "CURR?", "unit": "A"},
        {"name": "on", "query": "OUTP?", "parse": "bool"},
        {"name": "serial", "query": "*IDN?", "parse": "regex", "regex": r"VISA(\d+)"},
    ]
    script = [("VOLT 1.5", "CURR 0.5", "OUTP 1"), ("VOLT 7",), ("OUTP 0", "CURR 2.75")]
    res = open_resource(visa_files.PSU_RESOURCE, sim_library)
    v2 = build("v2", "scpi.custom", res, "ps", readings=readings, init=["*RST"])
    v4 = build("v4", "scpi.custom", res, "ps", readings=readings, init=["*RST"])

    v2.connect()
    rows2 = []
    for step in script:
        for command in step:
            v2.write(command)
        rows2 += v2.read()

    async def scenario() -> list[Any]:
        await v4.start()
        batches = []
        for step in script:
            for command in step:
                await v4.write(command)
            batches += await v4.read()
        return batches

    uni2 = [UnifiedMeasurement.from_v2(m) for m in rows2]
    uni4 = [r for b in asyncio.run(scenario()) for r in batch_to_rows(b)]
    assert [key(r) for r in uni2] == [key(r) for r in uni4]
    assert [key(r)[2] for r in uni2] == [1.5, 0.5, True, 6.0, 7.0, 0.5, True, 6.0,
                                         7.0, 2.75, False, 6.0]
    assert {key(r)[3] for r in uni4} == {"float64", "bool"}


def test_psu_profile_on_seeded_tcp_simulators(tcp_server, open_resource, build) -> None:
    """Two simulators with the same seed: even the measurement noise must match."""
    servers = {flavor: tcp_server("psu", seed=11) for flavor in ("v2", "v4")}
    insts = {flavor: build(flavor, "scpi.psu", open_resource(s.resource, "@py"), "supply")
             for flavor, s in servers.items()}
    # (method, argument) steps; None marks a poll
    script: list[tuple[str, Any] | None] = [
        ("set_voltage", 2.0), ("set_current_limit", 0.5), None, ("set_output", True), None,
        None, ("set_voltage", 7.5), None, ("set_output", False), None,
    ]

    v2 = insts["v2"]
    v2.connect()
    rows2: list[UnifiedMeasurement] = []
    for step in script:
        if step is None:
            rows2 += [UnifiedMeasurement.from_v2(m) for m in v2.read()]
        else:
            getattr(v2, step[0])(step[1])
    extra2 = (v2.voltage(), v2.current())

    v4 = insts["v4"]

    async def scenario() -> tuple[list[UnifiedMeasurement], tuple[float, float]]:
        await v4.start()
        rows: list[UnifiedMeasurement] = []
        for step in script:
            if step is None:
                rows += [r for b in await v4.read() for r in batch_to_rows(b)]
            else:
                await getattr(v4, step[0])(step[1])
        return rows, (await v4.voltage(), await v4.current())

    rows4, extra4 = asyncio.run(scenario())
    assert [key(r) for r in rows2] == [key(r) for r in rows4]
    assert extra2 == extra4
    values = [float(r.data.value) for r in rows2]  # type: ignore[union-attr]
    expected = [0.0, 0.0, 2.0, 0.2, 2.0, 0.2, 5.0, 0.5, 0.0, 0.0]  # CV, then CC at 0.5 A
    assert values == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert len({r.timestamp_ns for r in rows2}) == len(rows2)
