"""Fixtures of the Newport driver tests: a serial manager, fresh simulators, instruments.

Each test gets a fresh simulator registry and a line name of its own, so no device state
leaks between tests; every port and simulator is closed at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from newport_helpers import Build, instrument_type

import daqhub_sims
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor
from daqhub.plugins import arrow, hdf5
from daqhub.resources.serial import SerialPortManager, SharedSerialPort
from daqhub.specs import InstrumentContext
from daqhub_newport import plugin
from daqhub_sims import registry


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


@pytest.fixture
def host() -> PluginHost:
    """A host with this plugin and the core's built-in storage backends (not every plugin
    installed: another distribution's problem must not fail these tests)."""
    h = PluginHost(strict=True)
    h.register(plugin, "newport", "daqhub-newport", "0.1.0")
    h.register(hdf5, "hdf5", "daqhub", "")
    h.register(arrow, "arrow", "daqhub", "")
    return h
