"""A plugin host with small in-process plugins, for tests of the core alone."""

from __future__ import annotations

import types

import pytest

from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.specs import InstrumentType, StorageBackend


def _never(ctx):  # factories are not called by config validation
    raise AssertionError("factory called during validation")


def acme_plugin() -> types.SimpleNamespace:
    meter_ch = [ChannelSpec("power", "scalar", "W")]
    meter_schema = {"type": "object", "properties": {
        "wavelength_nm": {"type": "number", "minimum": 200, "maximum": 2000},
        "address": {"type": "integer", "minimum": 0, "maximum": 15}}}

    @hookimpl
    def daqhub_instrument_types():
        return [
            InstrumentType("acme.meter", "v2", "serial", _never, meter_ch, "a power meter",
                           meter_schema, ("PowerMeter",)),
            InstrumentType("acme.meter", "v4", "serial", _never, meter_ch, "a power meter",
                           meter_schema, ("PowerMeter",)),
            InstrumentType("acme.dmm", "v4", "visa", _never,
                           [ChannelSpec("volts", "scalar", "V")], "a DMM"),
            InstrumentType("acme.stage", "v2", "serial", _never,
                           [ChannelSpec("position", "scalar", "mm")], "a stage"),
        ]

    @hookimpl
    def daqhub_storage_backends():
        opts = {"type": "object", "properties": {"flush_interval": {"type": "number"}},
                "additionalProperties": False}
        return [StorageBackend("hdf5", _never, "test hdf5", opts),
                StorageBackend("arrow", _never, "test arrow", opts)]

    return types.SimpleNamespace(daqhub_instrument_types=daqhub_instrument_types,
                                 daqhub_storage_backends=daqhub_storage_backends)


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost()
    assert h.register(acme_plugin(), "acme", "acme-test", "1.0")
    return h
