"""Fixtures for Lab API tests: the demo's optics (power meter behind a polariser on a rotation
mount, Malus' law in the sims) with the mount in either flavor, and a mover that fails."""

from __future__ import annotations

import types

import pytest
from lab_fakes import fake_types

from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(fake_types))
    assert h.register(plugin, "lab-tests", "lab-tests", "0")
    return h
