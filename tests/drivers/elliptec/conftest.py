"""Fixtures for the Elliptec driver tests: a serial manager, simulated buses, instruments.

Instruments are built through the plugin's own InstrumentType factories, the way the
runtime builds them, on ports of a real SerialPortManager opened on ``sim://`` URLs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from elliptec_scripted import ELL14_IN, ScriptedBus, call

import daqhub_sims
from daqhub.host import PluginHost
from daqhub.plugins import arrow, hdf5
from daqhub.resources import SerialPortManager, SharedSerialPort
from daqhub.specs import InstrumentContext, InstrumentType
from daqhub_elliptec import plugin
from daqhub_sims import registry

#: Moves of the simulated modules run this much faster than the (unconfirmed) real speed.
FAST = "4"

registry.register_model("elliptecscripted", ScriptedBus)


@pytest.fixture
def manager() -> Iterator[SerialPortManager]:
    daqhub_sims.install()
    mgr = SerialPortManager(url_packages=[daqhub_sims.URL_HANDLER_PACKAGE],
                            reconnect_initial_s=0.2)
    yield mgr
    mgr.close_all()


@pytest.fixture
def bus_url() -> Callable[..., str]:
    """A fresh simulated bus per call: ``bus_url("0:ELL14,1:ELL9", stall="1")``."""

    def make(devices: str = "0:ELL14,1:ELL9", **options: str) -> str:
        opts = {"speed_scale": FAST, **options}
        query = "&".join(f"{k}={v}" for k, v in opts.items())
        return f"sim://elliptec?name=t{uuid.uuid4().hex}&devices={devices}&{query}"

    return make


@pytest.fixture
def scripted_url() -> str:
    return f"sim://elliptecscripted?name=t{uuid.uuid4().hex}"


def instrument_type(name: str, flavor: str) -> InstrumentType:
    for t in plugin.daqhub_instrument_types():
        if t.name == name and t.flavor == flavor:
            return t
    raise LookupError(f"{name} ({flavor}) is not registered")


@pytest.fixture
def build(manager: SerialPortManager) -> Callable[..., Any]:
    """``build(url, "elliptec.ell14", "v2", "rot", address=0)`` -> instrument (not connected)."""

    def make(url: str, type_name: str, flavor: str, instrument_id: str, **config: Any) -> Any:
        t = instrument_type(type_name, flavor)
        port: SharedSerialPort = manager.port(url, **t.serial_settings)
        block = {"id": instrument_id, "type": type_name, "port": url, **config}
        ctx = InstrumentContext(instrument_id, type_name, block, t.channels_for(block), port)
        return t.factory(ctx)

    return make


@pytest.fixture
def rotator(build: Callable[..., Any], scripted_url: str, request: pytest.FixtureRequest
            ) -> tuple[Any, ScriptedBus, str]:
    """An ELL14 at address 0 on the scripted bus, connected, in the flavor the test's
    ``indirect`` parameter names: (instrument, the bus, the flavor)."""
    flavor = request.param
    device = registry.endpoint(scripted_url).device
    assert isinstance(device, ScriptedBus)
    device.script.update({"0in": ELL14_IN, "0gp": b"0PO00000000\r\n", "0gs": b"0GS00\r\n"})
    inst = build(scripted_url, "elliptec.ell14", flavor, "rot", address=0)
    call(inst, flavor, "connect")
    device.received.clear()
    return inst, device, flavor


@pytest.fixture
def host() -> PluginHost:
    """A host with this plugin and the default storage backends a lab file names
    implicitly (not every plugin installed: another distribution's problem must not fail
    these tests)."""
    h = PluginHost(strict=True)
    assert h.register(plugin, "daqhub-elliptec:elliptec", "daqhub-elliptec", "0.1.0")
    assert h.register(hdf5, "daqhub:hdf5", "daqhub")
    assert h.register(arrow, "daqhub:arrow", "daqhub")
    return h
