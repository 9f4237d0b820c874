"""Fixtures of the Newport driver tests: a serial manager, fresh simulators, instruments.

Each test gets a fresh simulator registry and a line name of its own, so no device state
leaks between tests; every port and simulator is closed at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

import daqhub_sims
from daqhub.instrument import V2Instrument, V4Actor
from daqhub.resources.serial import SerialPortManager, SharedSerialPort
from daqhub.specs import InstrumentContext, InstrumentType
from daqhub_newport import plugin
from daqhub_sims import registry
from daqhub_sims.device import ManualClock

_line_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _fresh_sims() -> Iterator[None]:
    daqhub_sims.install()
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def manager() -> Iterator[SerialPortManager]:
    mgr = SerialPortManager(url_packages=[daqhub_sims.URL_HANDLER_PACKAGE],
                            reconnect_initial_s=0.05)
    yield mgr
    assert mgr.close_all(timeout=5.0) == []


def instrument_type(name: str, flavor: str) -> InstrumentType:
    for t in plugin.daqhub_instrument_types():
        if t.name == name and t.flavor == flavor:
            return t
    raise LookupError(f"{name} {flavor} not registered")


def sim_url(model: str, **options: Any) -> str:
    """A ``sim://`` URL on a line no other test uses (``name=`` makes it unique)."""
    query = "&".join(f"{k}={v}" for k, v in {"name": f"t{next(_line_numbers)}",
                                                **options}.items())
    return f"sim://{model}?{query}"


def manual_clock_sim(model: str, **options: Any) -> tuple[str, ManualClock]:
    """A fresh simulated line whose device time moves only when the test says so."""
    url = sim_url(model, **options)
    clock = ManualClock()
    registry.endpoint(url, clock=clock)
    return url, clock


def advance(url: str, clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    registry.endpoint(url).poke()


Build = Callable[..., Any]


@pytest.fixture
def build(manager: SerialPortManager) -> Build:
    """``build("newport.esp300", "v2", url, {"axis": 1}, id="x")``: an unconnected instrument."""

    def make(type_name: str, flavor: str, port_name: str, config: Mapping[str, Any],
             instrument_id: str = "dut") -> V2Instrument | V4Actor:
        t = instrument_type(type_name, flavor)
        port: SharedSerialPort = manager.port(port_name, **t.serial_settings)
        full = {"id": instrument_id, "type": type_name, "port": port_name, **config}
        ctx = InstrumentContext(instrument_id, type_name, full, t.channels_for(full), port=port)
        return t.factory(ctx)  # type: ignore[no-any-return]

    return make


def run(coro: Any, timeout: float = 10.0) -> Any:
    """Drive a v4 actor coroutine to completion, bounded."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
