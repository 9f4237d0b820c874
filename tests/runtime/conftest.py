"""Fixtures for runtime tests; the fake instruments live in runtime_fakes.py."""

from __future__ import annotations

import types

import pytest
from runtime_fakes import PRODUCED, RELEASE, BlockingV4, FlakyV4, OnCueV4, fake_instrument_types

from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(fake_instrument_types))
    assert h.register(plugin, "runtime-tests", "runtime-tests", "0")
    return h


@pytest.fixture(autouse=True)
def _release_hung_drivers():
    RELEASE.clear()
    PRODUCED.clear()
    FlakyV4.crashed.clear()
    BlockingV4.returned_at.clear()
    OnCueV4.cue.clear()
    yield
    RELEASE.set()


