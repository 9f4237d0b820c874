"""Fixtures for the storage tests: a plugin host with only the built-in storage backends,
and the sample generator of storage_testdata."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storage_testdata import ChannelData, make_channel_data

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.host import PluginHost


@pytest.fixture
def storage_host() -> PluginHost:
    """A host with just the built-in storage backends, immune to other plugins' state."""
    host = PluginHost(strict=True)
    host.register(hdf5_plugin, "daqhub:hdf5", "daqhub", "test")
    host.register(arrow_plugin, "daqhub:arrow", "daqhub", "test")
    return host


@pytest.fixture
def channel_data() -> Callable[..., list[ChannelData]]:
    return make_channel_data
