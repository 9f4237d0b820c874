"""Helpers of daqhub-acme's tests: instruments built the way the core builds them.

daqhub-sims' pytest plugin provides ``sim_url``, ``sim_endpoint``, ``sim_pty``, ``daqhub_host``,
``daqhub_lab``, ``daqhub_run`` and ``daqhub_conformance`` without any conftest; this file only
adds a serial manager and a factory for unconnected TC-1 instruments of either flavor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from daqhub.resources import SerialPortManager
from daqhub.specs import InstrumentContext

Build = Callable[..., Any]


@pytest.fixture
def serial_manager(daqhub_host: Any) -> Iterator[SerialPortManager]:
    """The core's serial manager, with the ``sim://`` handler daqhub-sims registers."""
    manager = SerialPortManager(daqhub_host.serial_url_packages(), reconnect_initial_s=0.05)
    yield manager
    assert manager.close_all(timeout=5.0) == []


@pytest.fixture
def build(daqhub_host: Any, serial_manager: SerialPortManager) -> Build:
    """``build("v2", port, setpoint_k=77.0)``: an unconnected ``acme.tc1`` on ``port``."""

    def make(flavor: str, port: str, instrument_id: str = "tc", **config: Any) -> Any:
        itype = daqhub_host.instrument_type("acme.tc1", flavor)
        assert itype is not None, "acme.tc1 is not registered: is daqhub-acme installed?"
        ctx = InstrumentContext(instrument_id, itype.name, config, itype.channels_for(config),
                                port=serial_manager.port(port, **itype.serial_settings))
        return itype.factory(ctx)

    return make
